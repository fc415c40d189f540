//! Observing the local server (through the keeper, then SQL) and
//! publishing the member's record with its heartbeat.

use super::*;

impl PgLoop {
    pub(super) async fn observe(&self, local: &mut Local, now: MonoInstant) -> PgView {
        let keeper = match self
            .keeper(Request::Status, raftgres_keeper::client::QUICK)
            .await
        {
            Ok(status) => status,
            Err(e) => {
                // A dead keeper's guard has killed the server; a new keeper
                // starts clean. A hung one refuses the new keeper's socket,
                // and its server may still run: nothing to do but wait.
                tracing::error!(member = self.me(), error = %e, "the keeper does not answer");
                if matches!(e, KeeperError::Unreachable { .. }) {
                    let socket = self.keeper.lock().await.socket().to_owned();
                    if let Err(e) = crate::keeper_link::attach(&self.config_path, &socket).await {
                        tracing::error!(member = self.me(), error = %e, "cannot start a new keeper");
                    }
                }
                return PgView::Busy {
                    action: "waiting for the keeper",
                };
            }
        };
        local.armed = keeper.armed.is_some();
        if keeper.postmaster_pid.is_some() && !local.running {
            tracing::info!(member = self.me(), pid = ?keeper.postmaster_pid, "found Postgres running under the keeper");
            local.running = true;
        }
        if local.running && keeper.postmaster_pid.is_none() {
            tracing::warn!(member = self.me(), status = ?keeper.last_exit, "Postgres exited unexpectedly");
            local.running = false;
            local.down_since.get_or_insert(now);
        }
        if local.running {
            let probe = local
                .probe
                .get_or_insert_with(|| Probe::new(&self.settings));
            match probe.status(keeper.postmaster_pid).await {
                Ok(st) => {
                    self.facts.send_if_changed(facts_of(&st));
                    local.unanswered_since = None;
                    local.down_since = None;
                    // A server found running (the agent restarted) calls
                    // back on its next stop or role change as what it is.
                    local.callback_role.get_or_insert(if st.in_recovery {
                        CallbackRole::Replica
                    } else {
                        CallbackRole::Primary
                    });
                    let pid = keeper.postmaster_pid.unwrap_or(0);
                    let timeline = match local.timeline_seen {
                        Some((seen_pid, seen)) if seen_pid == pid => seen.max(st.timeline),
                        _ => st.timeline,
                    };
                    local.timeline_seen = Some((pid, timeline));
                    local.standbys = if st.in_recovery {
                        Vec::new()
                    } else {
                        st.replication
                            .iter()
                            .map(|r| StandbyView {
                                name: r.application_name.clone(),
                                streaming: r.state == "streaming",
                                synchronous: r.sync_state == "sync",
                                flushed: r.flush_lsn.map(|l| Lsn(l.0)),
                            })
                            .collect()
                    };
                    local.pending_restart = st
                        .pending_restart
                        .into_iter()
                        .map(|p| {
                            (
                                p.name,
                                PendingRestart {
                                    old_value: p.running,
                                    new_value: p.configured,
                                },
                            )
                        })
                        .collect();
                    return PgView::Running {
                        data: DataInfo {
                            system_id: st.system_id,
                            timeline,
                            was_primary: !st.in_recovery,
                            // A replica is judged by what it has applied:
                            // received but unreplayed WAL (replay paused,
                            // or slow) counts as lag.
                            lsn: Lsn(if st.in_recovery {
                                st.replay_lsn.unwrap_or(st.wal_lsn).0
                            } else {
                                st.wal_lsn.0
                            }),
                        },
                        in_recovery: st.in_recovery,
                        streaming: st
                            .wal_receiver
                            .as_ref()
                            .is_some_and(|w| w.status == "streaming"),
                        upstream: if st.in_recovery {
                            local.upstream.clone()
                        } else {
                            None
                        },
                    };
                }
                Err(e) => {
                    let since = *local.unanswered_since.get_or_insert(now);
                    tracing::warn!(member = self.me(), error = %e, "Postgres does not answer");
                    if now - since < self.restart_grace {
                        // Slow is not dead: keep the last view for a while.
                        return self.view.borrow().clone();
                    }
                    local.down_since.get_or_insert(since);
                }
            }
        }
        if !is_initialized(&self.settings.data_dir) {
            return PgView::Uninitialized;
        }
        let data = match controldata(&self.settings).await {
            Ok(c) => DataInfo {
                system_id: c.system_id,
                // A stopped replica that replayed a timeline switch but no
                // checkpoint on the new timeline yet is already on it.
                timeline: c.timeline.max(c.min_recovery_end_timeline),
                was_primary: c.state.was_primary(),
                lsn: Lsn(c.checkpoint_lsn.0.max(c.min_recovery_end_lsn.0)),
            },
            Err(e) => {
                tracing::error!(member = self.me(), error = %e, "cannot read the control file");
                return PgView::Down {
                    data: DataInfo {
                        system_id: String::new(),
                        timeline: 0,
                        was_primary: true,
                        lsn: Lsn(0),
                    },
                    since: local.down_since.unwrap_or(now),
                    alive: keeper.server_alive,
                };
            }
        };
        match local.down_since {
            Some(since) => PgView::Down {
                data,
                since,
                alive: keeper.server_alive,
            },
            None if keeper.server_alive => PgView::Down {
                data,
                since: now,
                alive: true,
            },
            None => PgView::Stopped { data },
        }
    }

    /// Publishes this member's live record when it changed, and at least
    /// every third of a ttl as a heartbeat for the others' freshness
    /// judgement. The commit runs in its own task: a member cut off from the
    /// majority must still reach its lease deadline on time.
    pub(super) fn publish(
        &self,
        local: &mut Local,
        state: &ClusterState,
        view: &PgView,
        now: MonoInstant,
    ) {
        if local
            .publishing
            .as_ref()
            .is_some_and(|task| !task.is_finished())
        {
            return;
        }
        let mut m = self.member.clone();
        if let Some(pooler) = &self.pooler {
            m.pooler = true;
            m.pooler_paused_epoch = pooler.borrow().paused_for;
        }
        (m.role, m.pg_state) = view.published(state.lease.is_held_by(self.me()));
        m.promotion_vetoed = belief::read(&self.belief).promotion_vetoed(now, state.report_ttl());
        m.scheduled_restart = self.scheduled.borrow().clone().map(Box::new);
        m.permanent_slots = match &local.permanent_slots {
            Some(kept) => kept.clone(),
            None => state
                .members
                .get(self.me())
                .map(|before| before.permanent_slots.clone())
                .unwrap_or_default(),
        };
        if let PgView::Running {
            data,
            in_recovery,
            streaming,
            ..
        } = view
        {
            m.timeline = Some(data.timeline);
            m.replay_lsn = Some(data.lsn);
            // Shown only (/cluster, `list`): decisions rank by replay.
            m.receive_lsn = in_recovery
                .then(|| self.facts.borrow().received_lsn.map(Lsn))
                .flatten();
            m.streaming = *in_recovery && *streaming;
            m.pending_restart = local.pending_restart.clone();
        }
        let ttl = state.report_ttl();
        let heartbeat_due = local
            .last_publish
            .is_none_or(|at| now - at >= raftgres_ha::heartbeat_interval(ttl));
        m.heartbeat = local.heartbeat;
        if !heartbeat_due && local.published.as_ref() == Some(&m) {
            return;
        }
        local.heartbeat += 1;
        m.heartbeat = local.heartbeat;
        local.last_publish = Some(now);
        local.published = Some(m.clone());
        let consensus = self.consensus.clone();
        local.publishing = Some(tokio::spawn(async move {
            crate::publish::publish_record(&consensus, m, "member status").await;
        }));
    }
}

/// The status document's facts from one look at the running server.
fn facts_of(status: &raftgres_postgres::PgStatus) -> ServerFacts {
    ServerFacts {
        system_identifier: Some(status.system_id.clone()),
        postmaster_start_time: Some(status.postmaster_start_time.clone()),
        postmaster_start_unix_ms: Some(status.postmaster_start_unix_ms),
        conf_load_time: Some(status.conf_load_time.clone()),
        received_lsn: status.receive_lsn.map(|l| l.0),
        replayed_lsn: status.replay_lsn.map(|l| l.0),
        replayed_timestamp: status.replay_timestamp.clone(),
        replayed_unix_ms: status.replay_unix_ms,
        replay_paused: status.wal_replay_paused,
        replication: status
            .replication
            .iter()
            .map(|r| Standby {
                usename: r.usename.clone(),
                application_name: r.application_name.clone(),
                client_addr: r.client_addr.clone(),
                state: r.state.clone(),
                sync_state: r.sync_state.clone(),
                sync_priority: r.sync_priority,
            })
            .collect(),
        server_version: Some(status.server_version),
        // Copies run while nobody looks; they publish their own.
        progress: None,
    }
}
