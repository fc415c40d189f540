//! The replication slots this server keeps for the members that stream
//! from it.

use super::*;

impl PgLoop {
    /// Keeps a physical slot for each member that streams from this
    /// server (`ha::slot_holders`: on the primary every other member but
    /// those cascading from a replica; on a replica those cascading from
    /// it), so a standby's WAL is kept until it has it, and drops the slot
    /// of a member that now streams elsewhere once it is no longer in use,
    /// which would otherwise keep WAL here for ever. Slots not named after
    /// a member are the operator's and are left alone.
    pub(super) async fn ensure_slots(
        &self,
        local: &mut Local,
        state: &ClusterState,
        peers: &raftgres_ha::PeerObserver,
    ) {
        let ttl = state.report_ttl();
        let fresh = |m: &Member| peers.is_fresh(&m.name, mono_now(), ttl);
        let wanted = raftgres_ha::slot_holders(state, self.me(), &fresh);
        if wanted == local.slots_for {
            return;
        }
        let control = Control::new(&self.settings);
        for name in &wanted {
            if let Err(e) = control.create_physical_slot(&slot_name_for(name)).await {
                tracing::warn!(member = self.me(), slot_for = %name, error = %e, "cannot create a replication slot");
                return;
            }
        }
        let slots = match control.list_slots().await {
            Ok(slots) => slots,
            Err(e) => {
                tracing::warn!(member = self.me(), error = %e, "cannot list the replication slots");
                return;
            }
        };
        let unwanted = state
            .members
            .keys()
            .filter(|name| !wanted.contains(*name) && name.as_str() != self.me())
            .map(|name| slot_name_for(name));
        for slot in unwanted {
            let Some(found) = slots.iter().find(|s| s.name == slot) else {
                continue;
            };
            if found.slot_type != "physical" || found.active {
                // In use: the member still streams from here; next round.
                return;
            }
            if let Err(e) = control.drop_slot(&slot).await {
                tracing::warn!(member = self.me(), %slot, error = %e, "cannot drop a replication slot nobody streams from");
                return;
            }
        }
        local.slots_for = wanted;
    }
}
