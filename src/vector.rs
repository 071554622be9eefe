//! The stored vector format: raw little-endian float32, `4 × dim` bytes (as sqlite-vec uses).

use crate::error::{Error, Result};

pub fn to_blob(vector: &[f32]) -> Vec<u8> {
    let mut blob = Vec::with_capacity(vector.len() * 4);
    for value in vector {
        blob.extend_from_slice(&value.to_le_bytes());
    }
    blob
}

/// Decodes a BLOB of exactly `4 × dim` bytes; NaN or infinite components are rejected.
pub fn from_blob(blob: &[u8], dim: usize) -> Result<Vec<f32>> {
    let expected = dim * 4;
    if blob.len() != expected || dim == 0 {
        return Err(Error::VectorLength { len: blob.len(), expected, dim });
    }
    let vector: Vec<f32> = blob.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    if let Some(position) = vector.iter().position(|v| !v.is_finite()) {
        return Err(Error::Invalid(format!(
            "vector component {position} is {} (NaN/Inf are not allowed)",
            vector[position]
        )));
    }
    Ok(vector)
}

pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Averages consecutive rows of `matrix` (row-major, `dim` columns) into at most `groups` rows, as
/// even as possible and in order; each mean is rescaled to unit length when `normalize`. Fewer rows
/// than `groups` come back unchanged.
pub fn pool_rows(matrix: &[f32], dim: usize, groups: usize, normalize: bool) -> Vec<f32> {
    let rows = matrix.len() / dim.max(1);
    if rows <= groups || groups == 0 {
        return matrix.to_vec();
    }
    let mut pooled = Vec::with_capacity(groups * dim);
    for g in 0..groups {
        let (start, end) = (g * rows / groups, (g + 1) * rows / groups);
        let mut mean = vec![0.0f32; dim];
        for row in matrix[start * dim..end * dim].chunks_exact(dim) {
            for (m, x) in mean.iter_mut().zip(row) {
                *m += x;
            }
        }
        let scale = if normalize {
            let norm = dot(&mean, &mean).sqrt();
            if norm > 0.0 {
                1.0 / norm
            } else {
                0.0
            }
        } else {
            1.0 / (end - start) as f32
        };
        pooled.extend(mean.iter().map(|m| m * scale));
    }
    pooled
}

#[cfg(test)]
mod proptests {
    use super::*;

    proptest::proptest! {
        /// Any bytes: decoded only when the length is exactly 4 × dim and every component finite;
        /// a decoded vector re-encodes to the same bytes.
        #[test]
        fn blobs_decode_or_fail_cleanly(blob in proptest::collection::vec(proptest::num::u8::ANY, 0..64), dim in 0usize..20) {
            match from_blob(&blob, dim) {
                Ok(v) => {
                    proptest::prop_assert_eq!(v.len(), dim);
                    proptest::prop_assert!(v.iter().all(|x| x.is_finite()));
                    proptest::prop_assert_eq!(to_blob(&v), blob);
                }
                Err(_) => proptest::prop_assert!(blob.len() != dim * 4 || dim == 0 || blob.chunks_exact(4)
                    .any(|b| !f32::from_le_bytes([b[0], b[1], b[2], b[3]]).is_finite())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn blob_round_trip(vector in prop::collection::vec(-1e30f32..1e30, 1..600)) {
            let blob = to_blob(&vector);
            prop_assert_eq!(blob.len(), vector.len() * 4);
            prop_assert_eq!(from_blob(&blob, vector.len()).unwrap(), vector);
        }

        #[test]
        fn wrong_length_is_an_error(bytes in prop::collection::vec(any::<u8>(), 0..64), dim in 1usize..32) {
            let result = from_blob(&bytes, dim);
            if bytes.len() != dim * 4 {
                prop_assert!(matches!(result, Err(Error::VectorLength { .. })), "expected a length error");
            }
        }
    }

    #[test]
    fn nan_and_inf_are_rejected() {
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            assert!(from_blob(&to_blob(&[0.5, bad]), 2).is_err());
        }
    }

    #[test]
    fn pooling_averages_consecutive_rows() {
        let matrix = [1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 1.0];
        assert_eq!(pool_rows(&matrix, 2, 8, true), matrix.to_vec(), "fewer rows than groups: unchanged");
        // 5 rows into 2 groups: rows 0-1 and 2-4.
        assert_eq!(pool_rows(&matrix, 2, 2, false), vec![0.5, 0.5, 2.0 / 3.0, 1.0 / 3.0]);
        let unit = pool_rows(&matrix, 2, 2, true);
        for row in unit.chunks_exact(2) {
            assert!((dot(row, row) - 1.0).abs() < 1e-6);
        }
    }

    proptest::proptest! {
        /// Any shape: at most `groups` rows of `dim` finite values come back.
        #[test]
        fn pooling_bounds_rows(rows in 0usize..40, dim in 1usize..6, groups in 1usize..12, normalize: bool) {
            let matrix: Vec<f32> = (0..rows * dim).map(|i| (i % 7) as f32 - 3.0).collect();
            let pooled = pool_rows(&matrix, dim, groups, normalize);
            proptest::prop_assert_eq!(pooled.len(), rows.min(groups) * dim);
            proptest::prop_assert!(pooled.iter().all(|x| x.is_finite()));
        }
    }
}
