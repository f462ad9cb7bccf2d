//! Constant-time sampling from small discrete distributions via a 65 536-entry lookup table.

/// A discrete distribution over `T`, sampled with 16 random bits (resolution 1/65 536).
/// The table holds outcome indexes (2 bytes a slot) so it stays cache-resident.
#[derive(Debug, Clone)]
pub struct Categorical<T: Copy> {
    outcomes: Vec<T>,
    table: Vec<u16>,
}

impl<T: Copy> Categorical<T> {
    /// Builds the table from (outcome, weight) pairs; weights need not sum to one.
    /// Every outcome with a positive weight gets at least one slot.
    pub fn new(weights: &[(T, f64)]) -> Self {
        const SLOTS: usize = 1 << 16;
        let positive: Vec<(T, f64)> = weights.iter().copied().filter(|(_, w)| *w > 0.0).collect();
        let total: f64 = positive.iter().map(|(_, w)| w).sum();
        let mut counts: Vec<usize> = positive
            .iter()
            .map(|(_, w)| ((w / total * SLOTS as f64).round() as usize).max(1))
            .collect();
        // Rounding error goes to (or comes from) the most likely outcome.
        if let Some(largest) = (0..counts.len()).max_by_key(|i| counts[*i]) {
            let others: usize = counts.iter().sum::<usize>() - counts[largest];
            counts[largest] = SLOTS.saturating_sub(others).max(1);
        }
        let mut table = Vec::with_capacity(SLOTS);
        for (index, count) in counts.into_iter().enumerate() {
            table.extend(std::iter::repeat_n(index as u16, count));
        }
        table.truncate(SLOTS);
        let outcomes = positive.into_iter().map(|(outcome, _)| outcome).collect();
        Self { outcomes, table }
    }

    /// The outcome for 16 random bits.
    #[inline]
    pub fn sample(&self, bits: u16) -> T {
        self.outcomes[self.table[bits as usize] as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_follow_weights() {
        let c = Categorical::new(&[(1u8, 0.75), (2, 0.25)]);
        let ones = (0..=u16::MAX).filter(|b| c.sample(*b) == 1).count();
        assert_eq!(ones, 49152);
    }

    #[test]
    fn tiny_weights_keep_a_slot() {
        let c = Categorical::new(&[(1u8, 1.0), (9, 1e-9)]);
        assert!((0..=u16::MAX).any(|b| c.sample(b) == 9));
    }
}
