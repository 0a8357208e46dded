//! The ratchetbox demo: Alice and Bob set up an end-to-end encrypted session from a published
//! prekey bundle and exchange messages, some of them out of order, while the "server" only
//! ever sees bytes. Then they compare safety numbers, send a file, turn on disappearing
//! messages, and catch a key change.
//!
//! Run it with `cargo run --example chat`.

use std::collections::HashMap;
use std::process::ExitCode;

use ratchetbox::attachment::{self, AttachmentMetadata};
use ratchetbox::{
    Account, Content, DecryptError, Message, OsRng, PreKeyBundle, SafetyNumber, ScanResult,
    SessionRecord, SetupError, StorageKey, TimerChange, Timestamp, Trust,
};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn short(bytes: &[u8]) -> String {
    bytes[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
        + ".."
}

fn describe(wire: &[u8]) -> String {
    match Message::from_bytes(wire) {
        Ok(m) if m.is_initial() => format!(
            "initial message #{}, {} bytes (carries Alice's {} setup until she hears back)",
            m.counter(),
            wire.len(),
            if m.is_post_quantum() { "PQXDH" } else { "X3DH" }
        ),
        Ok(m) => format!("ratchet message #{}, {} bytes", m.counter(), wire.len()),
        Err(e) => format!("undecodable: {e}"),
    }
}

/// A scan result in words.
fn scan_result(result: &ScanResult) -> String {
    match result {
        ScanResult::Match => "the numbers match".to_owned(),
        ScanResult::Mismatch => {
            "MISMATCH: a key differs, do not trust this conversation".to_owned()
        }
        ScanResult::DifferentVersion { theirs, .. } => {
            format!("made by another safety-number version ({theirs}); update both apps")
        }
        ScanResult::WrongContact => "the code belongs to someone else".to_owned(),
    }
}

/// A trust level in words.
fn trust(level: Trust) -> &'static str {
    match level {
        Trust::FirstUse => "trusted on first use (not verified)",
        Trust::Verified => "verified",
        Trust::Changed => "changed (new key accepted, not verified)",
    }
}

fn text(received: &ratchetbox::ReceivedMessage) -> String {
    String::from_utf8_lossy(received.content().body()).into_owned()
}

struct Person {
    name: &'static str,
    account: Account,
    record: SessionRecord,
}

impl Person {
    fn send(&mut self, rng: &mut OsRng, body: &str, now: Timestamp) -> Result<Vec<u8>> {
        Ok(self.record.send(rng, &Content::new(body), now)?.into_wire())
    }

    fn receive(&mut self, wire: &[u8], now: Timestamp) -> Result<ratchetbox::ReceivedMessage> {
        Ok(self.record.receive(&mut self.account, wire, now)?)
    }

    fn read(&mut self, wire: &[u8], now: Timestamp) -> Result<()> {
        let received = self.receive(wire, now)?;
        println!("   {} reads \"{}\"", self.name, text(&received));
        Ok(())
    }
}

/// Runs the demo; an error is printed with its message (`Display`), never its `Debug` form.
fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("the demo failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let mut rng = OsRng::new();
    let t0 = Timestamp::now();
    let at = |secs: u64| t0.saturating_add_secs(secs);

    println!("== ratchetbox demo: Alice and Bob ==\n");

    // 1. Bob's app creates his account and publishes a prekey bundle.
    let mut bob = Person {
        name: "Bob",
        account: Account::new(&mut rng, t0),
        record: SessionRecord::new(),
    };
    let published = bob.account.generate_one_time_prekeys(&mut rng, 5, t0)?;
    let published_kem = bob.account.generate_one_time_kem_prekeys(&mut rng, 5, t0)?;
    // The server hands each requester one of each kind of one-time prekey, if it has any left.
    let bundle_bytes = bob
        .account
        .prekey_bundle(Some(published[0].id()), Some(published_kem[0].id()))?
        .to_bytes();
    println!(
        "1. Bob creates an identity key {} and uploads a signed prekey, a last-resort",
        short(bob.account.identity_key().as_bytes())
    );
    println!(
        "   post-quantum prekey, {} one-time prekeys and {} one-time post-quantum prekeys.",
        published.len(),
        published_kem.len()
    );
    println!(
        "   The server hands out a bundle of {} bytes with one one-time prekey of each kind.\n",
        bundle_bytes.len()
    );

    // 2. Alice fetches the bundle and starts a session (PQXDH as the initiator).
    let mut alice = Person {
        name: "Alice",
        account: Account::new(&mut rng, t0),
        record: SessionRecord::new(),
    };
    let bundle = PreKeyBundle::from_bytes(&bundle_bytes)?;
    alice.record.initiate(&mut rng, &alice.account, &bundle)?;
    let session = alice.record.session().ok_or("no session")?;
    println!(
        "2. Alice checks Bob's signatures on his signed prekey and his post-quantum (ML-KEM-1024)"
    );
    println!(
        "   prekey, runs PQXDH (X3DH plus a KEM encapsulation, so that traffic recorded today"
    );
    println!(
        "   stays safe from a future quantum computer) and starts session {} (its id, shortened).",
        short(&session.id().to_bytes())
    );
    println!(
        "   Post-quantum: {}. Bob is offline; nothing has been sent yet.\n",
        session.is_post_quantum()
    );

    // 3. Alice sends three messages before Bob comes online.
    println!("3. Alice sends three messages:");
    let mut in_flight = Vec::new();
    for body in ["Hi Bob!", "Are you there?", "Call me when you see this."] {
        let wire = alice.send(&mut rng, body, at(1))?;
        println!("   \"{body}\" -> {}", describe(&wire));
        in_flight.push(wire);
    }

    // 4. The server delivers them out of order.
    println!("\n4. The server delivers them out of order (3rd, 1st, 2nd):");
    for i in [2, 0, 1] {
        bob.read(&in_flight[i], at(60))?;
    }
    println!("   The first to arrive created Bob's side of the session and used up the one-time");
    println!(
        "   prekey and the one-time post-quantum prekey of the bundle; the other two carry the"
    );
    println!("   same setup and land in the same session.");
    println!(
        "   Bob has {} one-time prekeys and {} one-time post-quantum prekeys left.\n",
        bob.account.one_time_prekeys().count(),
        bob.account.one_time_kem_prekeys().count()
    );

    // 5. A copy of a message delivered again is refused.
    match bob.receive(&in_flight[0], at(61)) {
        Err(e) => match e.downcast_ref::<DecryptError>() {
            Some(e @ DecryptError::Duplicate { .. }) => {
                println!("5. The server replays Alice's first message: refused ({e}).\n")
            }
            _ => return Err(e),
        },
        Ok(_) => return Err("a replay must be refused".into()),
    }

    // 6. Bob answers: the conversation turns, and both sides ratchet to fresh keys.
    let reply = bob.send(&mut rng, "Hey Alice, I'm here now.", at(62))?;
    println!("6. Bob answers -> {}", describe(&reply));
    alice.read(&reply, at(63))?;
    let next = alice.send(&mut rng, "Great, talk soon!", at(64))?;
    println!(
        "   Alice's next message is a plain {} (no setup any more)",
        describe(&next)
    );
    bob.read(&next, at(65))?;
    println!();

    // 7. A message lost in transit does not stop the conversation; it still decrypts later.
    let delayed = bob.send(&mut rng, "(this one was delayed)", at(70))?;
    let after = bob.send(&mut rng, "Did you get my last message?", at(71))?;
    println!("7. Bob sends two messages; the first is delayed.");
    alice.read(&after, at(72))?;
    println!(
        "   (her session keeps {} skipped message key for the delayed one)",
        alice.record.session().map_or(0, |s| s.skipped_key_count())
    );
    alice.read(&delayed, at(80))?;
    println!();

    // 8. A tampered message is rejected, and nothing changes.
    let mut tampered = bob.send(&mut rng, "Meet at 10", at(90))?;
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    match alice.receive(&tampered, at(91)) {
        Err(e) => println!("8. A message modified in transit is refused: {e}\n"),
        Ok(_) => return Err("a tampered message must be refused".into()),
    }

    // 9. They compare safety numbers, in person or over a call.
    let alice_sees = SafetyNumber::new(
        b"alice@example",
        &alice.account.identity_key(),
        b"bob@example",
        &bob.account.identity_key(),
    )?;
    let bob_sees = SafetyNumber::new(
        b"bob@example",
        &bob.account.identity_key(),
        b"alice@example",
        &alice.account.identity_key(),
    )?;
    println!("9. Safety numbers. Alice's phone shows:");
    println!("   {alice_sees}");
    println!(
        "   Bob's phone shows the same: {}",
        alice_sees.display() == bob_sees.display()
    );
    let scanned = alice_sees.compare_scanned(&bob_sees.scannable())?;
    println!(
        "   Alice scans the QR code on Bob's phone: {}",
        scan_result(&scanned)
    );
    if scanned == ScanResult::Match {
        alice.record.mark_verified(&bob.account.identity_key())?;
        bob.record.mark_verified(&alice.account.identity_key())?;
    }
    println!(
        "   Both mark each other verified. Alice's app: Bob is {}; Bob's app: Alice is {}.\n",
        trust(alice.record.peer().ok_or("no peer")?.trust()),
        trust(bob.record.peer().ok_or("no peer")?.trust())
    );

    // 10. Alice sends a file: sealed once, uploaded anywhere; only the pointer (with the key)
    //     travels inside the conversation.
    let photo: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let (mut pointer, sealed) = attachment::seal(
        &mut rng,
        &photo,
        AttachmentMetadata::new("image/jpeg", "beach.jpg")?,
    )?;
    let mut cdn: HashMap<String, Vec<u8>> = HashMap::new();
    cdn.insert("blob/7f3a".into(), sealed);
    pointer.set_locator(b"blob/7f3a".to_vec())?;
    let mut content = Content::new("Photo from the beach");
    content.add_attachment(pointer)?;
    let wire = alice.record.send(&mut rng, &content, at(100))?.into_wire();
    println!(
        "10. Alice seals a {} KB photo, uploads {} KB of ciphertext, and sends a {}-byte message.",
        photo.len() / 1000,
        cdn["blob/7f3a"].len() / 1000,
        wire.len()
    );
    let received = bob.receive(&wire, at(101))?;
    let pointer = &received.content().attachments()[0];
    let blob = &cdn[std::str::from_utf8(pointer.locator())?];
    let opened = attachment::open(pointer, blob)?;
    println!(
        "    Bob downloads it, checks it and opens it: \"{}\", {} bytes, identical: {}\n",
        pointer.file_name(),
        opened.len(),
        opened == photo
    );

    // 11. Disappearing messages: deadlines come from each device's own clock.
    let update = alice.record.set_expiry_timer(&mut rng, 3600, at(200))?;
    let received = bob.receive(update.wire(), at(201))?;
    if let TimerChange::Changed { from, to } = received.timer_change() {
        println!(
            "11. Alice turns on disappearing messages. Bob's app: timer changed from {from} to {to}."
        );
    }
    let mut inbox = Vec::new();
    for (i, body) in ["This will vanish", "So will this", "And this"]
        .iter()
        .enumerate()
    {
        let sent = alice
            .record
            .send(&mut rng, &Content::new(*body), at(300 + 600 * i as u64))?;
        let received = bob.receive(sent.wire(), at(301 + 600 * i as u64))?;
        // Bob reads each message ten minutes after it arrives.
        let read_at = at(901 + 600 * i as u64);
        let deadline = received.expires_at(read_at).ok_or("timer on")?;
        println!(
            "    \"{body}\": Alice deletes it at +{}s, Bob (read at +{}s) at +{}s",
            sent.expires_at().ok_or("timer on")?.as_unix_secs() - t0.as_unix_secs(),
            read_at.as_unix_secs() - t0.as_unix_secs(),
            deadline.as_unix_secs() - t0.as_unix_secs()
        );
        inbox.push((text(&received), deadline));
    }
    for check in [at(3_000), at(4_600), at(6_000)] {
        let visible: Vec<&str> = inbox
            .iter()
            .filter(|(_, d)| *d > check)
            .map(|(t, _)| t.as_str())
            .collect();
        let visible = if visible.is_empty() {
            "nothing".to_owned()
        } else {
            visible
                .iter()
                .map(|t| format!("\"{t}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!(
            "    At +{}s Bob's phone still shows {visible}",
            check.as_unix_secs() - t0.as_unix_secs(),
        );
    }
    println!("    (ratchetbox authenticates the setting and erases its own keys on schedule with");
    println!("    SessionRecord::prune; deleting stored messages is the app's job, and a modified");
    println!("    client can always keep what it displayed.)\n");

    // 12. Apps store state sealed under a key from the platform key store.
    let storage_key = StorageKey::generate(&mut rng);
    let sealed = alice.record.seal(&storage_key, &mut rng);
    alice.record = SessionRecord::unseal(&sealed, &storage_key)?;
    let wire = alice.send(&mut rng, "Sent after an app restart", at(7_000))?;
    println!(
        "12. Alice's app seals her session record ({} bytes), restarts and restores it.",
        sealed.len()
    );
    bob.read(&wire, at(7_001))?;
    println!();

    // 13. Someone (a new phone, or an attacker the server vouches for) presents a new key
    //     for Bob. Alice's app does not switch silently.
    let new_bob = Account::new(&mut rng, at(8_000));
    let new_bundle = new_bob.prekey_bundle(None, None)?;
    match alice.record.initiate(&mut rng, &alice.account, &new_bundle) {
        Err(SetupError::IdentityChanged(change)) => {
            let (old, new) = change.safety_numbers(
                b"alice@example",
                &alice.account.identity_key(),
                b"bob@example",
            )?;
            println!("13. The server hands Alice a bundle with a different identity key for Bob.");
            println!("    ratchetbox refuses to use it silently: {change}");
            println!("    Old safety number: {old}");
            println!("    New safety number: {new}");
            let before = alice.record.peer().ok_or("no peer")?.trust();
            alice.record.accept_identity_change(&change)?;
            let after = alice.record.peer().ok_or("no peer")?.trust();
            println!(
                "    Alice accepts the change after asking Bob. Her app's trust in Bob's key:"
            );
            println!("    before: {}; after: {}.", trust(before), trust(after));
        }
        Err(e) => return Err(format!("a key change must be reported, got: {e}").into()),
        Ok(()) => return Err("a key change must be reported, but the new key was used".into()),
    }

    println!("\nDone: every message was end-to-end encrypted with forward secrecy.");
    Ok(())
}
