//! A program started inside a lab namespace, killed when its guard is dropped.

use std::ops::{Deref, DerefMut};
use std::process::Child;

/// A child started by [`crate::Lab::spawn`] (`ip netns exec NS program …`; `ip` execs the
/// program, so [`Child::id`] is the program's own PID). Dropping the guard kills and reaps it, so
/// a failing test does not leave servers behind; the [`crate::Lab`] also kills everything left
/// in its namespaces when it is dropped, so a guard that outlives its lab is harmless.
///
/// Derefs to [`Child`] for `id`, `stdout`, `try_wait` and friends.
#[derive(Debug)]
pub struct LabProcess {
    child: Child,
}

impl LabProcess {
    pub(crate) fn new(child: Child) -> Self {
        Self { child }
    }
}

impl Deref for LabProcess {
    type Target = Child;

    fn deref(&self) -> &Child {
        &self.child
    }
}

impl DerefMut for LabProcess {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.child
    }
}

impl Drop for LabProcess {
    fn drop(&mut self) {
        // Both fail harmlessly when the child already exited or was killed by the lab.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
