//! The replication slots this server keeps for the members that stream
//! from it.

use super::*;

impl PgLoop {
    /// Keeps a physical slot for each member that streams from this
    /// server (`ha::slot_holders`: on the primary every other member but
    /// those cascading from a replica; on a replica those cascading from
    /// it), so a standby's WAL is kept until it has it, and drops the slot
    /// of a member that now streams elsewhere, or that was removed from
    /// the cluster, once it is no longer in use: it would otherwise keep
    /// WAL here for ever. Slots not named after a member are the
    /// operator's and are left alone; so is the slot of a member removed
    /// while this agent was not running, which it cannot tell from one.
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
            if let Err(e) = control.create_physical_slot(&member_slot_name(name)).await {
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
        // The members of the state, and those this server kept a slot for
        // until now: one removed from the cluster is only in the latter.
        let known: BTreeSet<&String> = state.members.keys().chain(&local.slots_for).collect();
        let unwanted = known
            .into_iter()
            .filter(|name| !wanted.contains(*name) && name.as_str() != self.me())
            .map(|name| member_slot_name(name));
        for slot in unwanted {
            let Some(found) = slots.iter().find(|s| s.name == slot) else {
                continue;
            };
            if state
                .config
                .as_ref()
                .is_some_and(|config| config.values.ignores_slot(&slot))
            {
                // The operator's `ignore_slots` keeps it.
                continue;
            }
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

impl PgLoop {
    /// Keeps the config's permanent slots on this server, advances a
    /// replica's copies towards the primary's, and drops those it made
    /// that the config no longer names (`ha::plan_permanent_slots`).
    pub(super) async fn ensure_permanent_slots(
        &self,
        local: &mut Local,
        state: &ClusterState,
        view: &PgView,
        holds_lease: bool,
    ) {
        let server = match view {
            PgView::Running {
                in_recovery: false, ..
            } if holds_lease => raftgres_ha::SlotServer::Primary,
            PgView::Running {
                in_recovery: true,
                data,
                ..
            } => raftgres_ha::SlotServer::Replica {
                replay_lsn: data.lsn,
            },
            _ => return,
        };
        let kept = local.permanent_slots.get_or_insert_with(|| {
            state
                .members
                .get(self.me())
                .map(|before| before.permanent_slots.clone())
                .unwrap_or_default()
        });
        let made: BTreeSet<String> = kept.keys().cloned().collect();
        if made.is_empty() && raftgres_ha::permanent_slot_names(state).is_empty() {
            return;
        }
        let control = Control::new(&self.settings);
        let Some(listed) = self.listed_slots(&control).await else {
            return;
        };
        let present: Vec<raftgres_ha::LocalSlot> = listed
            .iter()
            .map(|slot| raftgres_ha::LocalSlot {
                name: slot.name.clone(),
                physical: slot.slot_type == "physical",
                active: slot.active,
                restart_lsn: slot.restart_lsn.map(|lsn| Lsn(lsn.0)),
            })
            .collect();
        let plan = raftgres_ha::plan_permanent_slots(state, self.me(), server, &present, &made);
        for slot in &plan.create {
            if let Err(e) = control.create_physical_slot(slot).await {
                tracing::warn!(member = self.me(), %slot, error = %e, "cannot create a permanent replication slot");
            }
        }
        for (slot, to) in &plan.advance {
            if let Err(e) = control
                .advance_slot(slot, raftgres_postgres::Lsn(to.0))
                .await
            {
                tracing::warn!(member = self.me(), %slot, %to, error = %e, "cannot advance a permanent replication slot");
            }
        }
        for slot in &plan.drop {
            match control.drop_slot(slot).await {
                Ok(()) => {
                    tracing::info!(member = self.me(), %slot, "dropped a replication slot the config no longer names")
                }
                Err(e) => {
                    tracing::warn!(member = self.me(), %slot, error = %e, "cannot drop a permanent replication slot")
                }
            }
        }
        let acted = !(plan.create.is_empty() && plan.advance.is_empty() && plan.drop.is_empty());
        let listed = match acted {
            true => match self.listed_slots(&control).await {
                Some(again) => again,
                None => return,
            },
            false => listed,
        };
        local.permanent_slots = Some(
            listed
                .iter()
                .filter(|slot| plan.kept.contains(&slot.name))
                .filter_map(|slot| Some((slot.name.clone(), Lsn(slot.restart_lsn?.0))))
                .collect(),
        );
    }

    async fn listed_slots(
        &self,
        control: &Control,
    ) -> Option<Vec<raftgres_postgres::ReplicationSlot>> {
        control
            .list_slots()
            .await
            .inspect_err(|e| tracing::warn!(member = self.me(), error = %e, "cannot list the replication slots"))
            .ok()
    }
}
