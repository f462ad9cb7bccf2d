//! One synthetic NYC Yellow Taxi trip per row, 2024 schema, with the real data's shapes:
//! correlated NULLs, meter-formula fares, airport flat fares, surcharges, tips by payment type,
//! and `total_amount` exactly the sum of its parts (all money is computed in cents).

use std::sync::Arc;

use arrow::array::TimestampMicrosecondArray;
use arrow::array::{ArrayRef, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use rand::rngs::SmallRng;
use rand::{Rng, RngCore, SeedableRng};
use rand_distr::StandardNormal;

use super::calendar::{Calendar, hour_of_day, is_weekday};
use super::categorical::Categorical;
use super::zones::{EWR, JFK, LGA, OUTSIDE_NYC, ZoneClass, ZoneModel};

/// The 2024 Yellow Taxi schema (column names and types exactly as the TLC files have them).
pub fn schema() -> SchemaRef {
    let ts = DataType::Timestamp(TimeUnit::Microsecond, None);
    let money = |name: &str| Field::new(name, DataType::Float64, true);
    Arc::new(Schema::new(vec![
        Field::new("VendorID", DataType::Int32, true),
        Field::new("tpep_pickup_datetime", ts.clone(), true),
        Field::new("tpep_dropoff_datetime", ts, true),
        Field::new("passenger_count", DataType::Int64, true),
        Field::new("trip_distance", DataType::Float64, true),
        Field::new("RatecodeID", DataType::Int64, true),
        Field::new("store_and_fwd_flag", DataType::Utf8, true),
        Field::new("PULocationID", DataType::Int32, true),
        Field::new("DOLocationID", DataType::Int32, true),
        Field::new("payment_type", DataType::Int64, true),
        money("fare_amount"),
        money("extra"),
        money("mta_tax"),
        money("tip_amount"),
        money("tolls_amount"),
        money("improvement_surcharge"),
        money("total_amount"),
        money("congestion_surcharge"),
        money("Airport_fee"),
    ]))
}

/// Share of trips reported without passenger count, rate code, store-and-forward flag,
/// congestion surcharge and airport fee (payment type 0, as in the TLC files).
const NULL_ROW_SHARE: f64 = 0.05;
/// 2024 meter: $3.00 initial charge, $0.70 per 1/5 mile or per minute below 12 mph.
const INITIAL_CENTS: i64 = 300;
const UNIT_CENTS: i64 = 70;
const JFK_FLAT_CENTS: i64 = 7_000;
const NEWARK_SURCHARGE_CENTS: i64 = 2_000;
const MTA_TAX_CENTS: i64 = 50;
const IMPROVEMENT_CENTS: i64 = 100;
const CONGESTION_CENTS: i64 = 250;
const AIRPORT_FEE_CENTS: i64 = 175;
const TOLL_CENTS: i64 = 694;
/// How far (seconds) a trip's position in the file strays from pickup-time order.
const UPLOAD_JITTER_S: u32 = 15 * 60;

/// The fixed distributions, built once per generation run.
pub struct TripModel {
    zones: ZoneModel,
    calendar: Calendar,
    vendor: Categorical<i32>,
    passengers: Categorical<i64>,
    payment: Categorical<i64>,
    /// Tip as a percentage of the pre-tip amount on card trips (0 = no tip).
    card_tip_percent: Categorical<u8>,
}

impl TripModel {
    /// Builds the model.
    pub fn new() -> Self {
        Self {
            zones: ZoneModel::new(),
            calendar: Calendar::new(),
            vendor: Categorical::new(&[(2, 0.750), (1, 0.2495), (6, 0.0005)]),
            // Shares among rows that have a count; with 5% NULL rows, 1 passenger is ~73% overall.
            passengers: Categorical::new(&[
                (1, 0.768),
                (2, 0.140),
                (3, 0.035),
                (4, 0.022),
                (0, 0.015),
                (5, 0.011),
                (6, 0.009),
            ]),
            // Among rows with a payment type: card 82%, cash 16.8% (~78% / ~16% overall).
            payment: Categorical::new(&[(1, 0.820), (2, 0.168), (4, 0.007), (3, 0.005)]),
            card_tip_percent: Categorical::new(&[
                (0, 0.12),
                (15, 0.10),
                (18, 0.12),
                (20, 0.33),
                (22, 0.10),
                (25, 0.16),
                (30, 0.07),
            ]),
        }
    }
}

impl Default for TripModel {
    fn default() -> Self {
        Self::new()
    }
}

/// Column buffers for one batch.
#[derive(Default)]
struct Columns {
    vendor: Vec<i32>,
    pickup: Vec<i64>,
    dropoff: Vec<i64>,
    passengers: Vec<i64>,
    distance: Vec<f64>,
    ratecode: Vec<i64>,
    store_and_fwd: Vec<&'static str>,
    pu: Vec<i32>,
    do_: Vec<i32>,
    payment: Vec<i64>,
    fare: Vec<i64>,
    extra: Vec<i64>,
    mta_tax: Vec<i64>,
    tip: Vec<i64>,
    tolls: Vec<i64>,
    improvement: Vec<i64>,
    total: Vec<i64>,
    congestion: Vec<i64>,
    airport_fee: Vec<i64>,
    /// false where the correlated NULL columns are NULL.
    present: Vec<bool>,
}

fn share(bits: u16, p: f64) -> bool {
    (bits as f64) < p * 65_536.0
}

fn trip_distance(rng: &mut SmallRng, pu: ZoneClass, pu_id: i32, do_id: i32) -> f64 {
    let z: f64 = rng.sample(StandardNormal);
    let miles = if pu_id == JFK || do_id == JFK {
        17.0 + 3.0 * z
    } else if pu_id == LGA || do_id == LGA {
        9.5 + 2.0 * z
    } else if pu_id == EWR || do_id == EWR {
        17.5 + 2.5 * z
    } else if pu == ZoneClass::Manhattan {
        (0.42 + 0.72 * z).exp() // median ~1.5 mi
    } else {
        (1.35 + 0.65 * z).exp()
    };
    (miles.clamp(0.0, 60.0) * 100.0).round() / 100.0
}

/// Average speed in mph by hour of day (Manhattan traffic).
fn speed_mph(hour: u32) -> f64 {
    match hour {
        7..=19 => 9.5,
        20..=23 | 6 => 12.5,
        _ => 16.0,
    }
}

impl Columns {
    fn with_capacity(n: usize) -> Self {
        let mut c = Self::default();
        macro_rules! reserve { ($($f:ident),*) => { $( c.$f.reserve(n); )* } }
        reserve!(
            vendor,
            pickup,
            dropoff,
            passengers,
            distance,
            ratecode,
            store_and_fwd,
            pu,
            do_,
            payment,
            fare,
            extra,
            mta_tax,
            tip,
            tolls,
            improvement,
            total,
            congestion,
            airport_fee,
            present
        );
        c
    }

    fn push_trip(&mut self, model: &TripModel, rng: &mut SmallRng, pickup_s: i64) {
        let a = rng.next_u64();
        let b = rng.next_u64();
        let c = rng.next_u64();
        let bits = |x: u64, i: u32| (x >> (16 * i)) as u16;
        let present = !share(bits(a, 0), NULL_ROW_SHARE);
        let vendor = model.vendor.sample(bits(a, 1));
        let pu = model.zones.pickup(bits(a, 2));
        let pu_class = model.zones.class(pu);
        let mut do_ = model.zones.dropoff(pu, bits(a, 3));
        let hour = hour_of_day(pickup_s);

        // Rate code from the route: JFK flat fare to/from Manhattan, Newark, outside NYC.
        let route_to_manhattan = model.zones.class(do_) == ZoneClass::Manhattan;
        let special = bits(b, 3);
        let ratecode = if (pu == JFK && route_to_manhattan)
            || (do_ == JFK && pu_class == ZoneClass::Manhattan && share(special, 0.8))
        {
            2
        } else if share(special, 0.003) {
            do_ = EWR;
            3
        } else if share(special, 0.005) {
            do_ = OUTSIDE_NYC;
            4
        } else if share(special, 0.011) {
            5
        } else if share(special, 0.020) {
            99
        } else {
            1
        };
        let distance = trip_distance(rng, pu_class, pu, do_);
        let airport = pu_class == ZoneClass::Airport;
        let speed = speed_mph(hour) * if airport || do_ == JFK { 1.6 } else { 1.0 };
        let noise = 0.75 + 0.5 * rng.random::<f64>();
        let duration_s = (90.0 + distance / speed * 3_600.0 * noise) as i64;
        let slow_minutes = ((duration_s as f64 - distance * 300.0).max(0.0) / 60.0 * 0.5).round();
        let meter =
            INITIAL_CENTS + UNIT_CENTS * ((distance * 5.0).round() as i64 + slow_minutes as i64);
        let fare = match ratecode {
            2 => JFK_FLAT_CENTS,
            3 => NEWARK_SURCHARGE_CENTS + meter,
            4 => 2 * meter,
            5 => 100 * (20 + (rng.next_u32() % 130) as i64),
            _ => meter,
        };
        let overnight = !(6..20).contains(&hour);
        let rush = (16..20).contains(&hour) && is_weekday(pickup_s);
        let extra = if overnight { 100 } else { 0 } + if rush { 250 } else { 0 };
        let congestion = if present
            && (pu_class == ZoneClass::Manhattan || model.zones.class(do_) == ZoneClass::Manhattan)
        {
            CONGESTION_CENTS
        } else {
            0
        };
        let airport_fee = if present && (pu == JFK || pu == LGA) {
            AIRPORT_FEE_CENTS
        } else {
            0
        };
        let crosses = airport || do_ == JFK || do_ == LGA || ratecode == 3 || ratecode == 4;
        let tolls = if share(bits(b, 2), if crosses { 0.45 } else { 0.01 }) {
            TOLL_CENTS
        } else {
            0
        };
        let payment = if present {
            model.payment.sample(bits(b, 0))
        } else {
            0
        };
        let pre_tip =
            fare + extra + MTA_TAX_CENTS + IMPROVEMENT_CENTS + congestion + airport_fee + tolls;
        let tip_percent = match payment {
            1 => model.card_tip_percent.sample(bits(b, 1)) as i64,
            0 if share(bits(c, 2), 0.5) => model.card_tip_percent.sample(bits(c, 3)) as i64,
            _ => 0,
        };
        let tip = pre_tip * tip_percent / 100;
        // Disputes and no-charge trips are often refunded: every amount negated.
        let sign = if matches!(payment, 3 | 4) && special & 1 == 1 {
            -1
        } else {
            1
        };

        self.present.push(present);
        self.vendor.push(vendor);
        self.pickup.push(pickup_s * 1_000_000);
        self.dropoff.push((pickup_s + duration_s) * 1_000_000);
        self.passengers.push(if present {
            model.passengers.sample(bits(c, 0))
        } else {
            0
        });
        self.distance.push(distance);
        self.ratecode.push(ratecode);
        self.store_and_fwd
            .push(if share(bits(c, 1), 0.005) { "Y" } else { "N" });
        self.pu.push(pu);
        self.do_.push(do_);
        self.payment.push(payment);
        self.fare.push(sign * fare);
        self.extra.push(sign * extra);
        self.mta_tax.push(sign * MTA_TAX_CENTS);
        self.tip.push(sign * tip);
        self.tolls.push(sign * tolls);
        self.improvement.push(sign * IMPROVEMENT_CENTS);
        self.total.push(sign * (pre_tip + tip));
        self.congestion.push(sign * congestion);
        self.airport_fee.push(sign * airport_fee);
    }

    fn finish(self, schema: SchemaRef) -> RecordBatch {
        let nulls = Some(NullBuffer::from(self.present));
        let cents = |v: Vec<i64>, nulls: Option<NullBuffer>| -> ArrayRef {
            let dollars: Vec<f64> = v.into_iter().map(|c| c as f64 / 100.0).collect();
            Arc::new(Float64Array::new(dollars.into(), nulls))
        };
        let flags = StringArray::from_iter(
            self.store_and_fwd
                .iter()
                .zip(nulls.iter().flat_map(|n| n.iter()))
                .map(|(f, p)| p.then_some(*f)),
        );
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int32Array::from(self.vendor)),
            Arc::new(TimestampMicrosecondArray::from(self.pickup)),
            Arc::new(TimestampMicrosecondArray::from(self.dropoff)),
            Arc::new(Int64Array::new(self.passengers.into(), nulls.clone())),
            Arc::new(Float64Array::from(self.distance)),
            Arc::new(Int64Array::new(self.ratecode.into(), nulls.clone())),
            Arc::new(flags),
            Arc::new(Int32Array::from(self.pu)),
            Arc::new(Int32Array::from(self.do_)),
            Arc::new(Int64Array::from(self.payment)),
            cents(self.fare, None),
            cents(self.extra, None),
            cents(self.mta_tax, None),
            cents(self.tip, None),
            cents(self.tolls, None),
            cents(self.improvement, None),
            cents(self.total, None),
            cents(self.congestion, nulls.clone()),
            cents(self.airport_fee, nulls),
        ];
        RecordBatch::try_new(schema, columns)
            .expect("columns match the taxi schema by construction")
    }
}

/// Rare timestamps outside 2024, as the TLC files have them (clock errors, trips before midnight
/// on New Year's Eve), so year extraction sees more than one group.
fn outlier_pickup(rng: &mut SmallRng, pickup_s: i64) -> i64 {
    let u: u32 = rng.next_u32();
    match u {
        0..=4_294 => 1_041_375_600 + (u as i64 % 3_600), // 2002-12-31 23:00 (about 1 per million)
        4_295..=21_474 => 1_704_063_600 + (u as i64 % 3_600), // 2023-12-31 23:00
        _ => pickup_s,
    }
}

/// Generates rows `[first_row, first_row + n)` of a dataset of `total_rows` rows. Pickup times
/// rise with the row index across the whole dataset (so files are in time order, as TLC's are);
/// everything else is drawn from an RNG seeded by `(seed, stream)`.
pub fn generate_batch(
    model: &TripModel,
    schema: SchemaRef,
    seed: u64,
    stream: u64,
    first_row: u64,
    n: usize,
    total_rows: u64,
) -> RecordBatch {
    let mut rng = SmallRng::seed_from_u64(seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut columns = Columns::with_capacity(n);
    let mut hint = 0usize;
    let total = total_rows.max(1) as f64;
    for i in 0..n as u64 {
        let u = ((first_row + i) as f64 + rng.random::<f64>()) / total;
        let in_order = model.calendar.pickup_at(u.min(0.999_999_999), &mut hint);
        // Vendors upload in batches, so the files are only roughly in time order.
        let pickup_s =
            in_order + (rng.next_u32() % (2 * UPLOAD_JITTER_S + 1)) as i64 - UPLOAD_JITTER_S as i64;
        let pickup_s = outlier_pickup(&mut rng, pickup_s);
        columns.push_trip(model, &mut rng, pickup_s);
    }
    columns.finish(schema)
}
