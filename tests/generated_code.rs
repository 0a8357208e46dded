// The Rust code generated from `proto/` is committed as `src/wire/generated.rs`.
// This test regenerates it with prost-build and protox (a pure-Rust protobuf compiler, so no
// `protoc` is needed anywhere) and fails if the committed file has drifted.
//
// To update the committed file after editing `proto/`:
// `RATCHETBOX_BLESS=1 cargo test --test generated_code`.

use std::path::{Path, PathBuf};

const HEADER: &str = "// @generated from proto/ by tests/generated_code.rs (prost-build + protox).\n\
// Do not edit: change the .proto files and run `RATCHETBOX_BLESS=1 cargo test --test generated_code`.\n\n";

/// Persisted-state messages (they hold secret keys, or are nested in ones that do): no
/// `Debug`, and zeroized on drop.
const SECRET_MESSAGES: &[&str] = &[
    ".ratchetbox.SignedPreKeyState",
    ".ratchetbox.OneTimePreKeyState",
    ".ratchetbox.AccountState",
    ".ratchetbox.SkippedRun",
    ".ratchetbox.SkippedKeyRow",
    ".ratchetbox.SendingChainState",
    ".ratchetbox.ReceivingChainState",
    ".ratchetbox.RatchetState",
    ".ratchetbox.SessionState",
    ".ratchetbox.SessionRecordState",
    ".ratchetbox.UsedSetup",
    ".ratchetbox.ChainHistory",
    ".ratchetbox.PeerIdentity",
    ".ratchetbox.AttachmentPointer",
    ".ratchetbox.Content",
    ".ratchetbox.KemPreKeyState",
    ".ratchetbox.SessionKemState",
    ".ratchetbox.BackupRow",
    ".ratchetbox.DeviceBackup",
    ".ratchetbox.GroupDistribution",
    ".ratchetbox.GroupSenderState",
    ".ratchetbox.GroupSkippedKey",
    ".ratchetbox.GroupReceiverGeneration",
    ".ratchetbox.GroupReceiverState",
    ".ratchetbox.GroupReceiverEntry",
    ".ratchetbox.GroupRecordState",
];

/// Plain-value messages nested in persisted state: they only need `Zeroize` so that the
/// messages containing them can derive it.
const NESTED_PLAIN_MESSAGES: &[&str] = &[
    ".ratchetbox.SessionLimits",
    ".ratchetbox.DisappearingTimer",
    ".ratchetbox.GroupMember",
];

fn proto_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("proto/ exists")
        .map(|e| e.expect("readable dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "proto"))
        .collect();
    files.sort();
    files
}

fn generate() -> String {
    let root = Path::new(option_env!("RATCHETBOX_ROOT").unwrap_or(env!("CARGO_MANIFEST_DIR")));
    let proto_dir = root.join("proto");
    let files = proto_files(&proto_dir);
    assert!(
        !files.is_empty(),
        "no .proto files found in {}",
        proto_dir.display()
    );
    let fds = protox::compile(&files, [&proto_dir]).expect("proto/ compiles");

    let out = std::env::temp_dir().join(format!("ratchetbox-gen-{}", std::process::id()));
    std::fs::create_dir_all(&out).expect("temp dir");
    let mut config = prost_build::Config::new();
    config.out_dir(&out);
    config.skip_debug(SECRET_MESSAGES.iter().copied());
    for msg in SECRET_MESSAGES {
        config.message_attribute(
            msg,
            "#[derive(::zeroize::Zeroize, ::zeroize::ZeroizeOnDrop)]",
        );
    }
    for msg in NESTED_PLAIN_MESSAGES {
        config.message_attribute(msg, "#[derive(::zeroize::Zeroize)]");
    }
    config.compile_fds(fds).expect("prost-build generates code");
    let code = std::fs::read_to_string(out.join("ratchetbox.rs")).expect("generated file");
    let _ = std::fs::remove_dir_all(&out);
    format!("{HEADER}{code}")
}

#[test]
fn committed_generated_code_matches_proto_sources() {
    let generated = generate();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/wire/generated.rs");
    if std::env::var_os("RATCHETBOX_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("write generated code");
        return;
    }
    let committed = std::fs::read_to_string(&path).expect("src/wire/generated.rs exists");
    assert!(
        committed == generated,
        "src/wire/generated.rs is out of date with proto/; run \
         `RATCHETBOX_BLESS=1 cargo test --test generated_code` and commit the result"
    );
}
