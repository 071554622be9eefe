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
}
