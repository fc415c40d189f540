//! Which of Patroni's callbacks an event of the local Postgres calls, and
//! with which role. Operators move virtual IPs and re-point backup tools on
//! these, so the rule must match Patroni's: a start in another role than
//! the last one is a role change, not a start.

/// Patroni's callback names, passed as the script's first argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackEvent {
    OnStart,
    OnStop,
    OnRestart,
    OnReload,
    OnRoleChange,
}

impl CallbackEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            CallbackEvent::OnStart => "on_start",
            CallbackEvent::OnStop => "on_stop",
            CallbackEvent::OnRestart => "on_restart",
            CallbackEvent::OnReload => "on_reload",
            CallbackEvent::OnRoleChange => "on_role_change",
        }
    }
}

/// The role passed as the script's second argument, named as Patroni 4
/// names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackRole {
    Primary,
    Replica,
}

impl CallbackRole {
    pub fn as_str(self) -> &'static str {
        match self {
            CallbackRole::Primary => "primary",
            CallbackRole::Replica => "replica",
        }
    }
}

/// The callback for Postgres started in `role`: `last` is the role this
/// agent last ran it in (`None` after the agent started), `was_running`
/// whether the start stopped a running server first.
pub fn after_start(
    last: Option<CallbackRole>,
    role: CallbackRole,
    was_running: bool,
) -> CallbackEvent {
    match last {
        Some(last) if last != role => CallbackEvent::OnRoleChange,
        _ if was_running => CallbackEvent::OnRestart,
        _ => CallbackEvent::OnStart,
    }
}

#[cfg(test)]
mod tests {
    use super::CallbackEvent::*;
    use super::CallbackRole::*;
    use super::*;

    #[test]
    fn a_start_calls_the_callback_patroni_calls() {
        #[rustfmt::skip]
        let cases = [
            // last role, role now, was running -> callback
            (None,          Primary, false, OnStart),
            (None,          Replica, false, OnStart),
            (None,          Replica, true,  OnRestart),
            (Some(Replica), Replica, false, OnStart),
            (Some(Replica), Replica, true,  OnRestart),
            (Some(Primary), Primary, true,  OnRestart),
            // An old primary fenced, rewound and started as a replica.
            (Some(Primary), Replica, false, OnRoleChange),
            (Some(Primary), Replica, true,  OnRoleChange),
            (Some(Replica), Primary, false, OnRoleChange),
        ];
        for (last, role, was_running, want) in cases {
            assert_eq!(
                after_start(last, role, was_running),
                want,
                "{last:?} -> {role:?}, was running {was_running}"
            );
        }
    }

    #[test]
    fn names_are_patronis() {
        let events = [OnStart, OnStop, OnRestart, OnReload, OnRoleChange];
        let names: Vec<_> = events.iter().map(|e| e.as_str()).collect();
        assert_eq!(
            names,
            [
                "on_start",
                "on_stop",
                "on_restart",
                "on_reload",
                "on_role_change"
            ]
        );
        assert_eq!([Primary.as_str(), Replica.as_str()], ["primary", "replica"]);
    }
}
