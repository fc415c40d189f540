//! The opening every real-process test shares: the serial lock, a lab
//! directory, a healthy lab and, for most, a primary monitor.

use crate::settle::roles_settled;
use crate::{PrimaryMonitor, lab_dir, serial, start_lab};
use raftgres_lab::Lab;
use tokio::sync::MutexGuard;

/// One test's lab directory, which also holds the serial lock: bound first
/// in the test, it is dropped last, after the lab has stopped, so the next
/// test starts only once this one's processes and files are gone.
pub struct LabDir {
    dir: tempfile::TempDir,
    _serial: MutexGuard<'static, ()>,
}

impl std::ops::Deref for LabDir {
    type Target = tempfile::TempDir;

    fn deref(&self) -> &tempfile::TempDir {
        &self.dir
    }
}

/// Waits for the other tests' labs, then starts a healthy lab of `members`
/// database members (and a witness with `witness`); the lab, and the member
/// that holds the lease.
pub async fn serial_lab(members: usize, witness: bool) -> (LabDir, Lab, String) {
    let serial = serial().await;
    let dir = lab_dir();
    let (lab, primary) = start_lab(&dir, members, witness).await;
    let dir = LabDir {
        dir,
        _serial: serial,
    };
    (dir, lab, primary)
}

/// [`serial_lab`] with a [`PrimaryMonitor`] polling from the first moment.
pub async fn monitored_lab(members: usize, witness: bool) -> (LabDir, Lab, String, PrimaryMonitor) {
    let (dir, lab, primary) = serial_lab(members, witness).await;
    let monitor = PrimaryMonitor::start(&lab);
    (dir, lab, primary, monitor)
}

/// [`serial_lab`] without a witness, once every agent agrees on the roles
/// ([`roles_settled`]): a request judged on the published state (a
/// switchover, a scheduled restart) is then judged on this state.
pub async fn settled_lab(members: usize) -> (LabDir, Lab, String) {
    let (dir, lab, primary) = serial_lab(members, false).await;
    roles_settled(&lab, &primary).await;
    (dir, lab, primary)
}

/// The database members other than those in `not`, in the lab's order.
pub fn members_except(lab: &Lab, not: &[&str]) -> Vec<String> {
    lab.description
        .members
        .iter()
        .filter(|m| !m.witness && !not.contains(&m.name.as_str()))
        .map(|m| m.name.clone())
        .collect()
}

/// The first database member not in `not`.
pub fn other_member(lab: &Lab, not: &[&str]) -> String {
    members_except(lab, not)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no database member other than {not:?}"))
}

/// The first database member that is not `primary`.
pub fn any_replica(lab: &Lab, primary: &str) -> String {
    other_member(lab, &[primary])
}

/// The name of the member whose Raft node id is `node_id`.
pub fn member_with_id(lab: &Lab, node_id: u64) -> Option<String> {
    lab.description
        .members
        .iter()
        .find(|m| m.node_id == node_id)
        .map(|m| m.name.clone())
}
