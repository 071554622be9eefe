//! The decoder's KV cache: one buffer per layer and kind (key, value) of shape
//! `[1, kv_heads, capacity, head_dim]`, bound as both `past_key_values.*` and `present.*`, so that
//! GroupQueryAttention writes each step's keys and values in place: no step copies the cache.
//! Positions `0..len` hold data (the caller tracks `len`); the rest is room to grow into.

use ort::memory::{AllocationDevice, Allocator};
use ort::value::Tensor;

use crate::error::{Error, Result};

/// Capacities are rounded up to a multiple of this many positions, so that a later question about a
/// cached prefix usually fits without moving the cache (one position of SmolLM2-135M's cache is
/// 46 KB: 128 positions are 5.9 MB).
pub(super) const CAPACITY_STEP: usize = 128;

pub(super) struct KvCache {
    /// `[key0, value0, key1, value1, …]`, each `[1, kv_heads, capacity, head_dim]` float32.
    pub(super) tensors: Vec<Tensor<f32>>,
    pub(super) capacity: usize,
}

/// The dimensions of a cache.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct CacheShape {
    pub layers: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

impl CacheShape {
    /// Floats of one buffer (one layer, one kind) of `capacity` positions.
    pub(super) fn floats(&self, capacity: usize) -> usize {
        self.kv_heads * capacity * self.head_dim
    }

    /// Bytes of the whole cache of `capacity` positions.
    pub(super) fn bytes(&self, capacity: usize) -> usize {
        2 * self.layers * self.floats(capacity) * std::mem::size_of::<f32>()
    }
}

/// The capacity to allocate for `needed` positions: rounded up to [`CAPACITY_STEP`], but not beyond
/// the decoder's `context` unless `needed` itself is.
pub(super) fn capacity_for(needed: usize, context: usize) -> usize {
    let rounded = needed.div_ceil(CAPACITY_STEP).max(1) * CAPACITY_STEP;
    rounded.min(context.max(needed))
}

/// Copies positions `0..len` of one buffer `[kv_heads, from_capacity, head_dim]` into another
/// `[kv_heads, to_capacity, head_dim]` (each head's positions are contiguous).
pub(super) fn copy_positions(
    from: &[f32],
    from_capacity: usize,
    to: &mut [f32],
    to_capacity: usize,
    len: usize,
    shape: CacheShape,
) {
    let (hd, rows) = (shape.head_dim, len * shape.head_dim);
    for head in 0..shape.kv_heads {
        let (src, dst) = (head * from_capacity * hd, head * to_capacity * hd);
        to[dst..dst + rows].copy_from_slice(&from[src..src + rows]);
    }
}

impl KvCache {
    /// A cache of `capacity` positions in `allocator`'s memory, its positions `0..len` taken from
    /// `front(i)` (buffer `i` of the layout above, `[kv_heads, len, head_dim]`), the rest unwritten.
    pub(super) fn new(
        allocator: &Allocator,
        shape: CacheShape,
        capacity: usize,
        len: usize,
        front: impl Fn(usize) -> Result<Vec<f32>>,
    ) -> Result<KvCache> {
        let err = |e: ort::Error| Error::inference("decoder", e);
        let dims = [1, shape.kv_heads, capacity, shape.head_dim];
        let on_host = allocator.memory_info().allocation_device() == AllocationDevice::CPU;
        let mut tensors = Vec::with_capacity(2 * shape.layers);
        for i in 0..2 * shape.layers {
            let mut tensor = Tensor::<f32>::new(allocator, dims).map_err(err)?;
            if len > 0 {
                let data = front(i)?;
                if on_host {
                    let (_, buffer) = tensor.extract_tensor_mut();
                    copy_positions(&data, len, buffer, capacity, len, shape);
                } else {
                    // Device memory: the whole buffer goes up from the host once.
                    let mut host = vec![0f32; shape.floats(capacity)];
                    copy_positions(&data, len, &mut host, capacity, len, shape);
                    Tensor::from_array((dims, host)).map_err(err)?.copy_into(&mut tensor).map_err(err)?;
                }
            }
            tensors.push(tensor);
        }
        Ok(KvCache { tensors, capacity })
    }

    /// Positions `0..len` of buffer `i`, `[kv_heads, len, head_dim]`, in host memory.
    pub(super) fn front(&self, i: usize, len: usize, shape: CacheShape) -> Result<Vec<f32>> {
        let err = |e: ort::Error| Error::inference("decoder", e);
        let tensor = &self.tensors[i];
        let mut out = vec![0f32; shape.floats(len)];
        if tensor.memory_info().allocation_device() == AllocationDevice::CPU {
            copy_positions(tensor.extract_tensor().1, self.capacity, &mut out, len, len, shape);
        } else {
            let host = tensor.to(AllocationDevice::CPU, 0).map_err(err)?;
            copy_positions(host.extract_tensor().1, self.capacity, &mut out, len, len, shape);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPE: CacheShape = CacheShape { layers: 2, kv_heads: 2, head_dim: 3 };

    #[test]
    fn capacities_round_up_to_the_step_within_the_context() {
        assert_eq!(capacity_for(1, 8192), CAPACITY_STEP);
        assert_eq!(capacity_for(CAPACITY_STEP, 8192), CAPACITY_STEP);
        assert_eq!(capacity_for(CAPACITY_STEP + 1, 8192), 2 * CAPACITY_STEP);
        assert_eq!(capacity_for(8100, 8192), 8192);
        assert_eq!(capacity_for(0, 8192), CAPACITY_STEP);
        assert_eq!(capacity_for(9000, 8192), 9000, "never below what is needed");
    }

    #[test]
    fn copying_positions_keeps_each_heads_rows_and_leaves_the_rest() {
        // [kv_heads=2, capacity=3, head_dim=3]: head h, position p, element e = 100h + 10p + e.
        let from: Vec<f32> =
            (0..2).flat_map(|h| (0..3).flat_map(move |p| (0..3).map(move |e| (100 * h + 10 * p + e) as f32))).collect();
        let mut to = vec![-1f32; SHAPE.floats(5)];
        copy_positions(&from, 3, &mut to, 5, 2, SHAPE);
        for h in 0..2 {
            for p in 0..5 {
                for e in 0..3 {
                    let got = to[(h * 5 + p) * 3 + e];
                    let want = if p < 2 { (100 * h + 10 * p + e) as f32 } else { -1.0 };
                    assert_eq!(got, want, "head {h} position {p} element {e}");
                }
            }
        }
        assert_eq!(SHAPE.bytes(4), 2 * 2 * (2 * 4 * 3) * 4);
    }
}
