//! A bounded slab with generation-checked handles: table entries are addressed by
//! `(index, generation)`, so a stale handle (an entry freed and reused) never reaches
//! the new occupant.
//!
//! Generations start at 1 and skip 0 when they wrap, so no live key packs to the `u64`
//! 0: the C ABI hands keys out as call handles and keeps 0 for "no call".

/// The generation of a slot's first occupant (and the one after a wrap).
const FIRST_GENERATION: u32 = 1;

/// A handle to a slab entry. The generation of a key the slab handed out is never 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Key {
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

impl Key {
    /// Packs the key into one `u64` (index in the low half, generation in the high
    /// half): never 0 for a key the slab handed out, whose generation is at least 1.
    pub(crate) fn to_u64(self) -> u64 {
        (self.generation as u64) << 32 | self.index as u64
    }

    pub(crate) fn from_u64(v: u64) -> Key {
        Key {
            index: v as u32,
            generation: (v >> 32) as u32,
        }
    }
}

/// Entries are boxed so that a free slot costs 16 bytes: the table keeps its slots
/// after a peak (indices must stay stable), but not the peak's entry storage.
#[derive(Debug)]
struct Slot<T> {
    generation: u32,
    value: Option<Box<T>>,
}

/// Fixed-capacity storage; `insert` fails when full instead of growing past the bound.
#[derive(Debug)]
pub(crate) struct Slab<T> {
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    len: usize,
    capacity: usize,
}

impl<T> Slab<T> {
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Slab {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
            capacity,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_full(&self) -> bool {
        self.len >= self.capacity
    }

    /// Stores `value`; `Err(value)` when the slab is at capacity.
    pub(crate) fn insert(&mut self, value: T) -> Result<Key, T> {
        if self.is_full() {
            return Err(value);
        }
        self.len += 1;
        if let Some(index) = self.free.pop() {
            let slot = &mut self.slots[index as usize];
            slot.value = Some(Box::new(value));
            return Ok(Key {
                index,
                generation: slot.generation,
            });
        }
        let index = self.slots.len() as u32;
        self.slots.push(Slot {
            generation: FIRST_GENERATION,
            value: Some(Box::new(value)),
        });
        Ok(Key {
            index,
            generation: FIRST_GENERATION,
        })
    }

    pub(crate) fn get(&self, key: Key) -> Option<&T> {
        let slot = self.slots.get(key.index as usize)?;
        if slot.generation != key.generation {
            return None;
        }
        slot.value.as_deref()
    }

    pub(crate) fn get_mut(&mut self, key: Key) -> Option<&mut T> {
        let slot = self.slots.get_mut(key.index as usize)?;
        if slot.generation != key.generation {
            return None;
        }
        slot.value.as_deref_mut()
    }

    /// Removes the entry; its key (and every copy of it) goes stale.
    pub(crate) fn remove(&mut self, key: Key) -> Option<T> {
        let slot = self.slots.get_mut(key.index as usize)?;
        if slot.generation != key.generation {
            return None;
        }
        let value = *slot.value.take()?;
        slot.generation = match slot.generation.wrapping_add(1) {
            0 => FIRST_GENERATION,
            g => g,
        };
        self.free.push(key.index);
        self.len -= 1;
        Some(value)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (Key, &T)> {
        self.slots.iter().enumerate().filter_map(|(i, s)| {
            s.value.as_deref().map(|v| {
                (
                    Key {
                        index: i as u32,
                        generation: s.generation,
                    },
                    v,
                )
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_keys_miss_after_reuse_and_capacity_is_enforced() {
        let mut s = Slab::with_capacity(2);
        let a = s.insert("a").unwrap();
        let b = s.insert("b").unwrap();
        assert_eq!(s.insert("c"), Err("c"));
        assert_eq!(s.remove(a), Some("a"));
        let c = s.insert("c").unwrap();
        assert_eq!(c.index, a.index);
        assert_eq!(s.get(a), None, "stale key must not see the new occupant");
        assert_eq!(s.get(c), Some(&"c"));
        assert_eq!(s.get(b), Some(&"b"));
        assert_eq!(s.remove(a), None);
        assert_eq!(s.len(), 2);
        assert_eq!(Key::from_u64(c.to_u64()), c);
    }

    #[test]
    fn no_key_packs_to_zero_not_even_after_the_generation_wraps() {
        let mut s = Slab::with_capacity(4);
        let first = s.insert(0u8).unwrap();
        assert_eq!(first.index, 0);
        assert_ne!(
            first.to_u64(),
            0,
            "the first key of the first slot is not 0"
        );
        assert_eq!(s.remove(first), Some(0));
        // Jump to the last generation, then wrap: 0 is skipped.
        s.slots[0].generation = u32::MAX;
        let last = s.insert(1).unwrap();
        assert_eq!(last.generation, u32::MAX);
        assert_eq!(s.remove(last), Some(1));
        let wrapped = s.insert(2).unwrap();
        assert_eq!(wrapped.generation, FIRST_GENERATION);
        assert_ne!(wrapped.to_u64(), 0);
        assert_eq!(s.get(Key::from_u64(0)), None, "0 never finds an entry");
        assert_eq!(s.get(last), None);
        assert_eq!(s.get(wrapped), Some(&2));
    }
}
