//! The prefix KV cache: the KV caches of prompt prefixes that questions about the same document
//! share, kept between questions in this process and bounded in bytes.

use std::collections::VecDeque;
use std::sync::Arc;

/// Default bound of the prefix KV cache (`E2LLM_PREFIX_CACHE_MB` overrides; 0 disables it).
pub const DEFAULT_PREFIX_CACHE_MB: usize = 512;

/// KV caches of prompt prefixes, least recently used evicted first, bounded in bytes. Keyed by a
/// hash of the prefix's embedding rows, so a hit is the same input at the same positions: the
/// cached keys and values are exactly those a fresh prefill would compute. `V` is the cache's
/// tensors (ONNX Runtime values in the decoder).
pub(super) struct PrefixCache<V> {
    limit_bytes: usize,
    used_bytes: usize,
    entries: VecDeque<CachedPrefix<V>>,
}

struct CachedPrefix<V> {
    key: u64,
    positions: usize,
    bytes: usize,
    kv: Arc<V>,
}

impl<V> PrefixCache<V> {
    pub(super) fn new(limit_bytes: usize) -> Self {
        PrefixCache { limit_bytes, used_bytes: 0, entries: VecDeque::new() }
    }

    /// The bound in bytes (0: the cache is off).
    pub(super) fn limit_bytes(&self) -> usize {
        self.limit_bytes
    }

    pub(super) fn get(&mut self, key: u64, positions: usize) -> Option<Arc<V>> {
        let index = self.entries.iter().position(|e| e.key == key && e.positions == positions)?;
        let entry = self.entries.remove(index)?;
        let kv = entry.kv.clone();
        self.entries.push_back(entry);
        Some(kv)
    }

    pub(super) fn insert(&mut self, key: u64, positions: usize, bytes: usize, kv: Arc<V>) {
        if bytes > self.limit_bytes {
            return;
        }
        while self.used_bytes + bytes > self.limit_bytes {
            match self.entries.pop_front() {
                Some(old) => self.used_bytes -= old.bytes,
                None => break,
            }
        }
        self.used_bytes += bytes;
        self.entries.push_back(CachedPrefix { key, positions, bytes, kv });
    }
}

/// The prefix cache's bound in bytes: `E2LLM_PREFIX_CACHE_MB` MiB, else [`DEFAULT_PREFIX_CACHE_MB`].
pub(super) fn prefix_cache_limit() -> usize {
    std::env::var("E2LLM_PREFIX_CACHE_MB")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(DEFAULT_PREFIX_CACHE_MB)
        .saturating_mul(1 << 20)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hit_needs_the_same_key_and_positions_and_returns_the_cached_value() {
        let mut cache = PrefixCache::new(100);
        let kv = Arc::new("kv");
        assert!(cache.get(1, 10).is_none());
        cache.insert(1, 10, 40, kv.clone());
        assert!(Arc::ptr_eq(&cache.get(1, 10).unwrap(), &kv));
        assert!(cache.get(1, 11).is_none());
        assert!(cache.get(2, 10).is_none());
        assert_eq!(cache.used_bytes, 40);
    }

    #[test]
    fn the_least_recently_used_prefix_is_evicted_first() {
        let mut cache = PrefixCache::new(100);
        cache.insert(1, 1, 40, Arc::new('a'));
        cache.insert(2, 1, 40, Arc::new('b'));
        // Reading 1 makes 2 the least recently used.
        assert_eq!(*cache.get(1, 1).unwrap(), 'a');
        cache.insert(3, 1, 40, Arc::new('c'));
        assert!(cache.get(2, 1).is_none());
        assert_eq!((*cache.get(1, 1).unwrap(), *cache.get(3, 1).unwrap()), ('a', 'c'));
        assert_eq!(cache.used_bytes, 80);
        // Room for a large entry is made by evicting as many as needed, oldest first.
        cache.insert(4, 1, 90, Arc::new('d'));
        assert!(cache.get(1, 1).is_none() && cache.get(3, 1).is_none());
        assert_eq!(cache.used_bytes, 90);
    }

    #[test]
    fn an_entry_over_the_bound_is_not_kept_and_evicts_nothing() {
        let mut cache = PrefixCache::new(100);
        cache.insert(1, 1, 60, Arc::new(1));
        cache.insert(2, 1, 101, Arc::new(2));
        assert!(cache.get(2, 1).is_none());
        assert_eq!(*cache.get(1, 1).unwrap(), 1);
        assert_eq!((cache.used_bytes, cache.limit_bytes()), (60, 100));
        let mut off = PrefixCache::new(0);
        off.insert(1, 1, 1, Arc::new(1));
        assert!(off.get(1, 1).is_none());
    }
}
