//! The prefix KV cache: the KV caches of prompt prefixes that questions about the same document
//! share, kept between questions in this process and bounded in bytes.

use std::collections::VecDeque;

/// Default bound of the prefix KV cache (`E2LLM_PREFIX_CACHE_MB` overrides; 0 disables it).
pub const DEFAULT_PREFIX_CACHE_MB: usize = 512;

/// KV caches of prompt prefixes, least recently used evicted first, bounded in bytes. Keyed by a
/// hash of the prefix's embedding rows, so a hit is the same input at the same positions: the
/// cached keys and values are exactly those a fresh prefill would compute. `V` is the cache's
/// buffers (`KvCache` in the decoder). A hit is taken out (the question writes its own positions
/// after the prefix, in the same buffers) and inserted again once the answer is done.
pub(super) struct PrefixCache<V> {
    limit_bytes: usize,
    used_bytes: usize,
    entries: VecDeque<CachedPrefix<V>>,
}

struct CachedPrefix<V> {
    key: u64,
    positions: usize,
    bytes: usize,
    kv: V,
}

impl<V> PrefixCache<V> {
    pub(super) fn new(limit_bytes: usize) -> Self {
        PrefixCache { limit_bytes, used_bytes: 0, entries: VecDeque::new() }
    }

    /// The bound in bytes (0: the cache is off).
    pub(super) fn limit_bytes(&self) -> usize {
        self.limit_bytes
    }

    /// The cache of prefix `key` of `positions` positions, taken out of the cache.
    pub(super) fn take(&mut self, key: u64, positions: usize) -> Option<V> {
        let index = self.entries.iter().position(|e| e.key == key && e.positions == positions)?;
        let entry = self.entries.remove(index)?;
        self.used_bytes -= entry.bytes;
        Some(entry.kv)
    }

    /// Keeps `kv` (of `bytes`) as the most recently used cache of prefix `key`, evicting the least
    /// recently used entries as needed; an entry larger than the bound is dropped.
    pub(super) fn insert(&mut self, key: u64, positions: usize, bytes: usize, kv: V) {
        if bytes > self.limit_bytes {
            return;
        }
        if let Some(index) = self.entries.iter().position(|e| e.key == key && e.positions == positions) {
            if let Some(old) = self.entries.remove(index) {
                self.used_bytes -= old.bytes;
            }
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
    fn a_hit_needs_the_same_key_and_positions_and_takes_the_entry_out() {
        let mut cache = PrefixCache::new(100);
        assert!(cache.take(1, 10).is_none());
        cache.insert(1, 10, 40, "kv");
        assert!(cache.take(1, 11).is_none());
        assert!(cache.take(2, 10).is_none());
        assert_eq!(cache.take(1, 10), Some("kv"));
        assert_eq!(cache.used_bytes, 0);
        assert!(cache.take(1, 10).is_none(), "taken out until inserted again");
        cache.insert(1, 10, 40, "kv");
        cache.insert(1, 10, 50, "kv2");
        assert_eq!((cache.used_bytes, cache.entries.len()), (50, 1), "one entry per prefix");
        assert_eq!(cache.take(1, 10), Some("kv2"));
    }

    #[test]
    fn the_least_recently_used_prefix_is_evicted_first() {
        let mut cache = PrefixCache::new(100);
        cache.insert(1, 1, 40, 'a');
        cache.insert(2, 1, 40, 'b');
        // Using 1 (taken, then put back) makes 2 the least recently used.
        let a = cache.take(1, 1).unwrap();
        cache.insert(1, 1, 40, a);
        cache.insert(3, 1, 40, 'c');
        assert!(cache.take(2, 1).is_none());
        assert_eq!(cache.used_bytes, 80);
        // Room for a large entry is made by evicting as many as needed, oldest first.
        cache.insert(4, 1, 90, 'd');
        assert!(cache.take(1, 1).is_none() && cache.take(3, 1).is_none());
        assert_eq!(cache.used_bytes, 90);
        assert_eq!(cache.take(4, 1), Some('d'));
    }

    #[test]
    fn an_entry_over_the_bound_is_not_kept_and_evicts_nothing() {
        let mut cache = PrefixCache::new(100);
        cache.insert(1, 1, 60, 1);
        cache.insert(2, 1, 101, 2);
        assert!(cache.take(2, 1).is_none());
        assert_eq!((cache.used_bytes, cache.limit_bytes()), (60, 100));
        assert_eq!(cache.take(1, 1), Some(1));
        let mut off = PrefixCache::new(0);
        off.insert(1, 1, 1, 1);
        assert!(off.take(1, 1).is_none());
    }
}
