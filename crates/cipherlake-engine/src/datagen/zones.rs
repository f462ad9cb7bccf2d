//! The NYC TLC taxi zone table (public reference data, shipped inside the product) and the
//! pickup / drop-off zone distributions the generator draws from.

use super::categorical::Categorical;

/// The 265-row taxi zone lookup table as published by the NYC TLC
/// (`LocationID,Borough,Zone,service_zone`).
pub const ZONES_CSV: &str = include_str!("../../data/taxi_zone_lookup.csv");

/// JFK Airport's LocationID.
pub const JFK: i32 = 132;
/// LaGuardia Airport's LocationID.
pub const LGA: i32 = 138;
/// Newark Airport's LocationID.
pub const EWR: i32 = 1;
/// "Outside of NYC".
pub const OUTSIDE_NYC: i32 = 265;

/// Where a zone lies, as far as fares and trip lengths are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneClass {
    /// Manhattan's Yellow Zone (congestion surcharge area and most trips).
    Manhattan,
    /// JFK or LaGuardia.
    Airport,
    /// Any other zone (outer boroughs, Newark, unknown).
    Outer,
}

/// One row of the zone table.
#[derive(Debug, Clone)]
pub struct Zone {
    /// LocationID (1..=265).
    pub id: i32,
    /// Borough name as in the table.
    pub borough: String,
    /// Fare-relevant class.
    pub class: ZoneClass,
}

/// The parsed zone table.
pub fn zones() -> Vec<Zone> {
    ZONES_CSV
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split(',');
            let id: i32 = fields.next()?.trim().parse().ok()?;
            let borough = fields.next()?.trim().to_string();
            let _zone = fields.next()?;
            let service_zone = fields.next()?.trim();
            let class = match (id, service_zone) {
                (JFK | LGA, _) => ZoneClass::Airport,
                (_, "Yellow Zone") => ZoneClass::Manhattan,
                _ => ZoneClass::Outer,
            };
            Some(Zone { id, borough, class })
        })
        .collect()
}

/// Target share of all pickups by class; the rest of each class's mass is spread over its zones
/// with a Zipf-like popularity so a few zones dominate, as in the real data.
const PICKUP_SHARE: [(ZoneClass, f64); 3] = [
    (ZoneClass::Manhattan, 0.895),
    (ZoneClass::Airport, 0.065),
    (ZoneClass::Outer, 0.040),
];

/// Drop-off shares by pickup class: (Manhattan, Airport, Outer).
const DROPOFF_SHARE: [(ZoneClass, [f64; 3]); 3] = [
    (ZoneClass::Manhattan, [0.885, 0.035, 0.080]),
    (ZoneClass::Airport, [0.600, 0.050, 0.350]),
    (ZoneClass::Outer, [0.300, 0.030, 0.670]),
];

/// Pickup and drop-off zone samplers.
pub struct ZoneModel {
    /// Zone table indexed by LocationID (index 0 unused).
    pub by_id: Vec<Option<Zone>>,
    pickup: Categorical<i32>,
    /// Drop-off samplers indexed by pickup class.
    dropoff: [Categorical<i32>; 3],
}

fn class_index(class: ZoneClass) -> usize {
    match class {
        ZoneClass::Manhattan => 0,
        ZoneClass::Airport => 1,
        ZoneClass::Outer => 2,
    }
}

/// Zones of a class with Zipf-like weights summing to `share`.
fn weighted_zones(zones: &[Zone], class: ZoneClass, share: f64, salt: usize) -> Vec<(i32, f64)> {
    let members: Vec<&Zone> = zones.iter().filter(|z| z.class == class).collect();
    // A fixed, seed-independent permutation so popularity is not simply by LocationID order.
    let mut ranked: Vec<(usize, &Zone)> = members
        .iter()
        .map(|z| ((z.id as usize * 7919 + salt * 104_729) % 1009, *z))
        .collect();
    ranked.sort_by_key(|(key, _)| *key);
    let weights: Vec<f64> = (0..ranked.len())
        .map(|rank| 1.0 / (rank as f64 + 2.0).powf(0.9))
        .collect();
    let total: f64 = weights.iter().sum();
    ranked
        .iter()
        .zip(weights)
        .map(|((_, z), w)| (z.id, share * w / total))
        .collect()
}

impl ZoneModel {
    /// Builds the samplers from the shipped zone table.
    pub fn new() -> Self {
        let zones = zones();
        let mut by_id = vec![None; 266];
        for z in &zones {
            if let Some(slot) = by_id.get_mut(z.id as usize) {
                *slot = Some(z.clone());
            }
        }
        let pickup_weights: Vec<(i32, f64)> = PICKUP_SHARE
            .iter()
            .flat_map(|(class, share)| weighted_zones(&zones, *class, *share, 1))
            .collect();
        let dropoff = DROPOFF_SHARE.map(|(_, shares)| {
            let classes = [ZoneClass::Manhattan, ZoneClass::Airport, ZoneClass::Outer];
            let weights: Vec<(i32, f64)> = classes
                .iter()
                .zip(shares)
                .flat_map(|(class, share)| weighted_zones(&zones, *class, share, 2))
                .collect();
            Categorical::new(&weights)
        });
        Self {
            by_id,
            pickup: Categorical::new(&pickup_weights),
            dropoff,
        }
    }

    /// The class of a LocationID.
    pub fn class(&self, id: i32) -> ZoneClass {
        self.by_id
            .get(id as usize)
            .and_then(|z| z.as_ref())
            .map_or(ZoneClass::Outer, |z| z.class)
    }

    /// Draws a pickup zone from 16 random bits.
    pub fn pickup(&self, bits: u16) -> i32 {
        self.pickup.sample(bits)
    }

    /// Draws a drop-off zone for a trip that started in `pickup`.
    pub fn dropoff(&self, pickup: i32, bits: u16) -> i32 {
        self.dropoff[class_index(self.class(pickup))].sample(bits)
    }
}

impl Default for ZoneModel {
    fn default() -> Self {
        Self::new()
    }
}
