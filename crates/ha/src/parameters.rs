//! Which server settings a member's Postgres runs with.

use raftgres_state::ClusterState;
use std::collections::BTreeMap;

/// The cluster's `postgresql.parameters` (the dynamic config, the same on
/// every member) under the member's own from its settings file: a local
/// value wins, as in Patroni, so one member can differ (a bigger
/// `shared_buffers` on a bigger host) while the rest follow the cluster.
pub fn postgres_parameters(
    state: &ClusterState,
    local: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut merged = state
        .config
        .as_ref()
        .map(|c| c.values.postgresql_parameters.clone())
        .unwrap_or_default();
    merged.extend(local.iter().map(|(k, v)| (k.clone(), v.clone())));
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use raftgres_state::DynamicConfig;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn local_values_win_over_the_cluster_s_and_both_are_kept() {
        let mut state = ClusterState::default();
        assert_eq!(
            postgres_parameters(&state, &map(&[("work_mem", "8MB")])),
            map(&[("work_mem", "8MB")]),
            "before a config is committed only the local values apply"
        );
        let mut values = crate::testing::values();
        values.postgresql_parameters = map(&[("work_mem", "4MB"), ("max_connections", "200")]);
        state.config = Some(DynamicConfig { version: 1, values });
        assert_eq!(
            postgres_parameters(&state, &map(&[("work_mem", "8MB"), ("jit", "off")])),
            map(&[
                ("work_mem", "8MB"),
                ("max_connections", "200"),
                ("jit", "off")
            ])
        );
        assert_eq!(
            postgres_parameters(&state, &BTreeMap::new()),
            map(&[("work_mem", "4MB"), ("max_connections", "200")])
        );
    }
}
