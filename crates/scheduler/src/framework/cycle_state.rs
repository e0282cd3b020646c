//! Per-cycle scratch space plugins share between their extension points (upstream
//! `framework.CycleState`): PreFilter computes, Filter reads once per node. Entries are
//! keyed by type, and a cycle holds only a handful, so a linear scan beats hashing.

use std::any::{Any, TypeId};
use std::collections::HashSet;

/// A value stored in a [`CycleState`]; clonable because preemption dry-runs filters on
/// copies of the state.
pub trait StateData: Any + Send + Sync {
    fn clone_data(&self) -> Box<dyn StateData>;
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl<T: Any + Clone + Send + Sync> StateData for T {
    fn clone_data(&self) -> Box<dyn StateData> {
        Box::new(self.clone())
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

#[derive(Default)]
pub struct CycleState {
    entries: Vec<(TypeId, Box<dyn StateData>)>,
    /// Filter plugins whose PreFilter returned Skip.
    pub skip_filter_plugins: HashSet<&'static str>,
    /// Score plugins whose PreScore returned Skip.
    pub skip_score_plugins: HashSet<&'static str>,
}

impl Clone for CycleState {
    fn clone(&self) -> Self {
        CycleState {
            entries: self
                .entries
                .iter()
                .map(|(t, v)| (*t, (**v).clone_data()))
                .collect(),
            skip_filter_plugins: self.skip_filter_plugins.clone(),
            skip_score_plugins: self.skip_score_plugins.clone(),
        }
    }
}

impl std::fmt::Debug for CycleState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CycleState")
            .field("entries", &self.entries.len())
            .field("skip_filter_plugins", &self.skip_filter_plugins)
            .field("skip_score_plugins", &self.skip_score_plugins)
            .finish()
    }
}

impl CycleState {
    pub fn new() -> CycleState {
        CycleState::default()
    }

    /// Stores `value`, replacing any earlier value of the same type.
    pub fn write<T: StateData>(&mut self, value: T) {
        let id = TypeId::of::<T>();
        match self.entries.iter_mut().find(|(t, _)| *t == id) {
            Some(slot) => slot.1 = Box::new(value),
            None => self.entries.push((id, Box::new(value))),
        }
    }

    pub fn read<T: StateData>(&self) -> Option<&T> {
        let id = TypeId::of::<T>();
        self.entries
            .iter()
            .find(|(t, _)| *t == id)
            .and_then(|(_, v)| (**v).as_any().downcast_ref::<T>())
    }

    pub fn read_mut<T: StateData>(&mut self) -> Option<&mut T> {
        let id = TypeId::of::<T>();
        self.entries
            .iter_mut()
            .find(|(t, _)| *t == id)
            .and_then(|(_, v)| (**v).as_any_mut().downcast_mut::<T>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Debug, PartialEq)]
    struct A(u32);
    #[derive(Clone, Debug, PartialEq)]
    struct B(&'static str);

    #[test]
    fn values_are_keyed_by_type_and_cloned_deeply() {
        let mut s = CycleState::new();
        assert!(s.read::<A>().is_none());
        s.write(A(1));
        s.write(B("x"));
        s.write(A(2));
        assert_eq!(s.read::<A>(), Some(&A(2)));
        let mut copy = s.clone();
        if let Some(a) = copy.read_mut::<A>() {
            a.0 = 3;
        }
        assert_eq!(s.read::<A>(), Some(&A(2)));
        assert_eq!(copy.read::<A>(), Some(&A(3)));
        assert_eq!(copy.read::<B>(), Some(&B("x")));
    }
}
