//! A tiny seeded generator (SplitMix64) whose whole state is one `u64`, so it can be persisted with the
//! paper exchange and a restored exchange continues the same sequence.

/// Advances `state` and returns the next pseudo-random value.
pub(super) fn next_u64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A value in `0..=max`.
pub(super) fn up_to(state: &mut u64, max: u64) -> u64 {
    let v = next_u64(state);
    match max.checked_add(1) {
        Some(n) => v % n,
        None => v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence_and_bounded() {
        let (mut a, mut b) = (7_u64, 7_u64);
        let xs: Vec<u64> = (0..20).map(|_| up_to(&mut a, 10)).collect();
        let ys: Vec<u64> = (0..20).map(|_| up_to(&mut b, 10)).collect();
        assert_eq!(xs, ys);
        assert!(xs.iter().all(|x| *x <= 10));
        let mut c = 8_u64;
        let zs: Vec<u64> = (0..20).map(|_| up_to(&mut c, 10)).collect();
        assert_ne!(xs, zs);
    }
}
