use super::*;
use std::path::PathBuf;

/// A config directory with `files`, and every other required file empty.
fn dir_with(files: &[(&str, &str)]) -> tempdir::Dir {
    let d = tempdir::Dir::new();
    for name in DOMAIN_FILES.iter().chain(["local"].iter()) {
        std::fs::write(d.path().join(format!("{name}.yaml")), "").unwrap();
    }
    for (name, body) in files {
        std::fs::write(d.path().join(name), body).unwrap();
    }
    d
}

// ---- configuration that cannot silently go wrong (issue 17) ----

#[test]
fn a_missing_domain_file_is_an_error_naming_it() {
    let d = dir_with(&[("base.yaml", "")]);
    std::fs::remove_file(d.path().join("risk.yaml")).unwrap();
    let err = Settings::load_with_env(d.path(), no_env).unwrap_err();
    assert!(err.source_name.ends_with("risk.yaml"), "{err}");
    assert!(err.message.contains("not found"), "{err}");
}

#[test]
fn a_misnamed_or_unknown_file_is_an_error_naming_it() {
    let d = dir_with(&[("base.yaml", ""), ("risk.yml", "risk:\n  max_leverage: 2\n")]);
    let err = Settings::load_with_env(d.path(), no_env).unwrap_err();
    assert!(err.source_name.ends_with("risk.yml"), "{err}");
    assert!(err.message.contains("rename it to risk.yaml"), "{err}");

    let d = dir_with(&[("base.yaml", ""), ("secrets.txt", "x")]);
    let err = Settings::load_with_env(d.path(), no_env).unwrap_err();
    assert!(err.source_name.ends_with("secrets.txt"), "{err}");
    assert!(err.message.contains("unknown file"), "{err}");

    // Hidden files (editor swap files, .gitkeep) are not configuration.
    let d = dir_with(&[("base.yaml", ""), (".risk.yaml.swp", "x")]);
    assert!(Settings::load_with_env(d.path(), no_env).is_ok());
}

#[test]
fn limits_out_of_range_name_file_and_key() {
    for (body, key) in [
        ("risk:\n  max_leverage: 50\n", "risk.max_leverage"),
        ("risk:\n  max_leverage: 0\n", "risk.max_leverage"),
        ("risk:\n  max_position_pct: 200\n", "risk.max_position_pct"),
        ("risk:\n  daily_loss_pct: '-1'\n", "risk.daily_loss_pct"),
        ("risk:\n  regime_leverage: {choppy: 9}\n", "risk.regime_leverage.choppy"),
        (
            "risk:\n  confidence_after_3_losses: 1.5\n",
            "risk.confidence_after_3_losses",
        ),
        ("market:\n  poll_interval_secs: 0\n", "market.poll_interval_secs"),
        (
            "orchestration:\n  tasks:\n    ta_analysis:\n      interval_seconds: 0\n",
            "orchestration.tasks.ta_analysis.interval_seconds",
        ),
        (
            "execution:\n  paper:\n    taker_fee_pct: '101'\n",
            "execution.paper.taker_fee_pct",
        ),
    ] {
        let d = dir_with(&[("base.yaml", body)]);
        let err = Settings::load_with_env(d.path(), no_env).unwrap_err();
        assert!(err.source_name.ends_with("base.yaml"), "{body}: {err}");
        assert!(err.message.starts_with(&format!("{key}: ")), "{body}: {err}");
    }
}

#[test]
fn enum_errors_list_the_valid_values_under_a_clean_key_path() {
    let d = dir_with(&[("base.yaml", "market:\n  source: simulate\n")]);
    let err = Settings::load_with_env(d.path(), no_env).unwrap_err();
    assert!(err.message.starts_with("market.source: "), "{err}");
    assert!(
        err.message
            .contains("`simulated`, `kraken`, `kraken_ws`, `replay`, `external`"),
        "{err}"
    );

    let d = dir_with(&[(
        "base.yaml",
        "api:\n  tokens:\n    - {name: a, token: aaaaaaaaaaaaaaaaaaaa, role: boss}\n",
    )]);
    let err = Settings::load_with_env(d.path(), no_env).unwrap_err();
    assert!(err.message.starts_with("api.tokens[0].role: "), "{err}");
    assert!(err.message.contains("`viewer`, `operator`, `admin`"), "{err}");
    assert!(!err.message.contains("String("), "{err}");
}

#[test]
fn the_shipped_config_is_in_range() {
    let s = Settings::load_with_env(&PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/config")), no_env);
    assert!(s.is_ok(), "{s:?}");
}

mod tempdir {
    pub struct Dir(std::path::PathBuf);
    impl Dir {
        pub fn new() -> Self {
            let p = std::env::temp_dir().join(format!("tg-settings-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&p).unwrap();
            Self(p)
        }
        pub fn path(&self) -> &std::path::Path {
            &self.0
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn no_env(_: &str) -> Option<String> {
    None
}

#[test]
fn unknown_key_names_file_and_key() {
    let d = dir_with(&[("base.yaml", "server:\n  bind: 127.0.0.1:0\n  bogus_key: 1\n")]);
    let err = Settings::load_with_env(d.path(), no_env).unwrap_err();
    assert!(err.source_name.ends_with("base.yaml"), "{err}");
    assert!(err.message.contains("bogus_key"), "{err}");
}

#[test]
fn secrets_never_print() {
    let d = dir_with(&[("base.yaml", "app:\n  mode: paper\n")]);
    let s = Settings::load_with_env(d.path(), |k| match k {
        "KRAKEN_API_SECRET" => Some("s3cr3t-value-abcdef".into()),
        "TRIPLEGAIN_API_TOKEN" => Some("admin-token-0123456789".into()),
        "DATABASE_URL" => Some("postgres://u:pw@h/db".into()),
        _ => None,
    })
    .unwrap();
    let yaml = s.redacted_yaml().unwrap();
    let dbg = format!("{s:?}");
    for secret in ["s3cr3t-value-abcdef", "admin-token-0123456789", "pw@h"] {
        assert!(!yaml.contains(secret), "yaml leaks {secret}");
        assert!(!dbg.contains(secret), "debug leaks {secret}");
    }
    assert!(yaml.contains("[REDACTED]"));
}

#[test]
fn kraken_websocket_and_reserve_settings_default_on_and_are_checked_naming_the_key() {
    let d = dir_with(&[("base.yaml", "app:\n  mode: paper\n")]);
    let s = Settings::load_with_env(d.path(), no_env).unwrap();
    assert!(s.kraken.websocket && s.kraken.start_charged);
    assert_eq!(s.kraken.ws_private_url, "wss://ws-auth.kraken.com/v2");
    assert_eq!(
        (s.kraken.reserved_rest_points, s.kraken.reserved_calls_per_minute),
        (2.0, 3)
    );
    assert_eq!(s.kraken.dead_mans_switch_refresh_secs, 30);
    let cases = [
        (
            "kraken:\n  ws_private_url: https://ws-auth.kraken.com/v2\n",
            "kraken.ws_private_url",
        ),
        ("kraken:\n  ws_public_url: ws.kraken.com\n", "kraken.ws_public_url"),
        ("kraken:\n  reserved_rest_points: 9\n", "kraken.reserved_rest_points"),
        ("kraken:\n  rest_safety_net_secs: 0\n", "kraken.rest_safety_net_secs"),
    ];
    // The key is named as the source (a cross-field check) or leads the message (a range
    // check, with the file as the source).
    for (yaml, key) in cases {
        let d = dir_with(&[("base.yaml", yaml)]);
        let err = Settings::load_with_env(d.path(), no_env).unwrap_err();
        assert!(
            err.source_name == key || err.message.starts_with(&format!("{key}: ")),
            "{err}"
        );
    }
    let d = dir_with(&[("base.yaml", "market:\n  source: kraken_ws\n")]);
    assert_eq!(
        Settings::load_with_env(d.path(), no_env).unwrap().market.source,
        MarketSource::KrakenWs
    );
}

#[test]
fn protection_and_visibility_keys_load_and_zero_is_refused() {
    let d = dir_with(&[
        ("base.yaml", ""),
        (
            "execution.yaml",
            "execution:\n  protection:\n    max_unprotected_secs: 5\n  tracking:\n    visibility_window_secs: 60\n    search_interval_ms: 2000\n",
        ),
    ]);
    let s = Settings::load_with_env(d.path(), no_env).unwrap();
    let m = s.execution.manager_config(false);
    assert_eq!(
        (m.max_unprotected_secs, m.visibility_window_secs, m.search_interval_ms),
        (5, 60, 2000)
    );
    for key in [
        "execution.protection.max_unprotected_secs",
        "execution.tracking.visibility_window_secs",
    ] {
        let (section, name) = key.rsplit_once('.').unwrap();
        let (_, sub) = section.split_once('.').unwrap();
        let yaml = format!("execution:\n  {sub}:\n    {name}: 0\n");
        let d = dir_with(&[("base.yaml", yaml.as_str())]);
        let err = Settings::load_with_env(d.path(), no_env).unwrap_err();
        assert!(
            err.source_name == key || err.message.starts_with(&format!("{key}: ")),
            "{err}"
        );
    }
    let d = dir_with(&[
        ("base.yaml", ""),
        ("execution.yaml", "execution:\n  protection:\n    max_unprotected: 5\n"),
    ]);
    let err = Settings::load_with_env(d.path(), no_env).unwrap_err();
    assert!(err.source_name.contains("execution.yaml"), "{err}");
    assert!(err.message.contains("max_unprotected"), "{err}");
}

#[test]
fn memory_record_limit_must_be_positive() {
    let d = dir_with(&[("base.yaml", "database:\n  memory_max_records: 0\n")]);
    let err = Settings::load_with_env(d.path(), no_env).unwrap_err();
    assert_eq!(err.source_name, "database.memory_max_records", "{err}");
}

#[test]
fn live_mode_without_database_is_refused() {
    let d = dir_with(&[("base.yaml", "app:\n  mode: live\n")]);
    let err = Settings::load_with_env(d.path(), no_env).unwrap_err();
    assert_eq!(err.source_name, "DATABASE_URL");
}

#[test]
fn rate_limits_default_to_60_reads_and_10_control_and_are_checked_naming_the_key() {
    let d = dir_with(&[("base.yaml", "app:\n  mode: paper\n")]);
    let s = Settings::load_with_env(d.path(), no_env).unwrap();
    assert_eq!(
        s.api.rate_limit,
        RateLimitSettings {
            reads_per_minute: 60,
            control_per_minute: 10
        }
    );

    let d = dir_with(&[("base.yaml", "api:\n  rate_limit:\n    control_per_minute: 2000000\n")]);
    let err = Settings::load_with_env(d.path(), no_env).unwrap_err();
    assert_eq!(err.source_name, "api.rate_limit.control_per_minute", "{err}");

    let d = dir_with(&[("base.yaml", "api:\n  rate_limit:\n    reads_per_minute: -1\n")]);
    let err = Settings::load_with_env(d.path(), no_env).unwrap_err();
    assert!(
        err.message.contains("reads_per_minute") || err.message.contains("-1"),
        "{err}"
    );
}

#[test]
fn live_mode_needs_the_confirmation_variable() {
    let d = dir_with(&[("base.yaml", "app:\n  mode: live\nmarket:\n  source: kraken\n")]);
    let with = |confirm: Option<&'static str>| {
        move |k: &str| match k {
            "DATABASE_URL" => Some("postgres://u@h/db".to_owned()),
            "KRAKEN_API_KEY" => Some("key".to_owned()),
            "KRAKEN_API_SECRET" => Some("c2VjcmV0".to_owned()),
            "TRIPLEGAIN_CONFIRM_LIVE_TRADING" => confirm.map(str::to_owned),
            _ => None,
        }
    };
    let err = Settings::load_with_env(d.path(), with(None)).unwrap_err();
    assert_eq!(err.source_name, "TRIPLEGAIN_CONFIRM_LIVE_TRADING");
    let err = Settings::load_with_env(d.path(), with(Some("yes"))).unwrap_err();
    assert_eq!(err.source_name, "TRIPLEGAIN_CONFIRM_LIVE_TRADING");
    let s = Settings::load_with_env(d.path(), with(Some("I_UNDERSTAND_THE_RISKS"))).unwrap();
    assert_eq!(s.app.mode, TradingMode::Live);
}

#[test]
fn live_mode_prices_on_kraken_only_and_fault_injection_is_paper_outside_production() {
    let live_env = |k: &str| match k {
        "DATABASE_URL" => Some("postgres://u@h/db".to_owned()),
        "KRAKEN_API_KEY" => Some("key".to_owned()),
        "KRAKEN_API_SECRET" => Some("c2VjcmV0".to_owned()),
        "TRIPLEGAIN_CONFIRM_LIVE_TRADING" => Some("I_UNDERSTAND_THE_RISKS".to_owned()),
        _ => None,
    };
    for source in ["simulated", "replay", "external"] {
        let yaml = format!("app:\n  mode: live\nmarket:\n  source: {source}\n");
        let d = dir_with(&[("base.yaml", yaml.as_str())]);
        let err = Settings::load_with_env(d.path(), live_env).unwrap_err();
        assert_eq!(err.source_name, "market.source", "{source}: {err}");
        assert!(err.message.contains(source), "{err}");
    }
    // Paper mode may use any source.
    let d = dir_with(&[("base.yaml", "market:\n  source: simulated\n")]);
    let s = Settings::load_with_env(d.path(), no_env).unwrap();
    assert!(
        s.fault_injection(),
        "paper outside production defaults to fault injection"
    );

    let d = dir_with(&[(
        "base.yaml",
        "app:\n  mode: live\nmarket:\n  source: kraken\nserver:\n  fault_injection: true\n",
    )]);
    let err = Settings::load_with_env(d.path(), live_env).unwrap_err();
    assert_eq!(err.source_name, "server.fault_injection", "{err}");
    let d = dir_with(&[("base.yaml", "app:\n  mode: live\nmarket:\n  source: kraken\n")]);
    assert!(!Settings::load_with_env(d.path(), live_env).unwrap().fault_injection());

    let d = dir_with(&[
        ("base.yaml", "server:\n  fault_injection: true\n"),
        ("production.yaml", "{}\n"),
    ]);
    let prod = |k: &str| (k == "TRIPLEGAIN_ENV").then(|| "production".to_owned());
    let err = Settings::load_with_env(d.path(), prod).unwrap_err();
    assert_eq!(err.source_name, "server.fault_injection", "{err}");
    let d = dir_with(&[("base.yaml", "{}\n"), ("production.yaml", "{}\n")]);
    assert!(!Settings::load_with_env(d.path(), prod).unwrap().fault_injection());
}

#[test]
fn environment_overrides_files() {
    let d = dir_with(&[("base.yaml", "server:\n  workers: 2\n")]);
    std::env::set_var("TRIPLEGAIN__SERVER__WORKERS", "3");
    let s = Settings::load_with_env(d.path(), |k| std::env::var(k).ok());
    std::env::remove_var("TRIPLEGAIN__SERVER__WORKERS");
    assert_eq!(s.unwrap().server.workers, 3);
}
