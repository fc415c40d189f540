//! Replacing a watch's value so that its receivers wake only for a change:
//! the loops that read these watches act on every wake.

use tokio::sync::watch;

pub trait SendIfChanged<T> {
    /// Sets the value to `next`, notifying the receivers only if it differs.
    fn send_if_changed(&self, next: T);
}

impl<T: PartialEq> SendIfChanged<T> for watch::Sender<T> {
    fn send_if_changed(&self, next: T) {
        self.send_if_modified(|value| {
            let changed = *value != next;
            if changed {
                *value = next;
            }
            changed
        });
    }
}
