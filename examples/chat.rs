//! The ratchetbox demo: Alice and Bob set up an end-to-end encrypted session from a published
//! prekey bundle and exchange messages, some of them out of order, while the "server" only
//! ever sees bytes.
//!
//! Run it with `cargo run --release --example chat`.

use ratchetbox::{
    Account, DecryptError, Message, OsRng, PreKeyBundle, SessionRecord, StorageKey, Timestamp,
};

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
            "initial message #{}, {} bytes: it carries Alice's X3DH setup until she hears back",
            m.counter(),
            wire.len()
        ),
        Ok(m) => format!("ratchet message #{}, {} bytes", m.counter(), wire.len()),
        Err(e) => format!("undecodable: {e}"),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut rng = OsRng::new();
    let now = Timestamp::now();

    println!("== ratchetbox demo: Alice and Bob ==\n");

    // 1. Bob's app creates his account and publishes a prekey bundle.
    let mut bob = Account::new(&mut rng, now);
    let published = bob.generate_one_time_prekeys(&mut rng, 5)?;
    let bundle_bytes = bob.prekey_bundle(Some(published[0].id()))?.to_bytes();
    println!(
        "1. Bob creates an identity key {} and uploads a signed prekey",
        short(bob.identity_key().as_bytes())
    );
    println!(
        "   and {} one-time prekeys. The server hands out a bundle of {} bytes.\n",
        published.len(),
        bundle_bytes.len()
    );

    // 2. Alice fetches the bundle and starts a session (X3DH as the initiator).
    let mut alice = Account::new(&mut rng, now);
    let bundle = PreKeyBundle::from_bytes(&bundle_bytes)?;
    let mut alice_to_bob = SessionRecord::new();
    alice_to_bob.initiate(&mut rng, &alice, &bundle)?;
    println!("2. Alice checks Bob's signature on the signed prekey, runs X3DH and starts");
    println!(
        "   session {:?}. Bob is offline; nothing has been sent yet.\n",
        alice_to_bob.session_id().ok_or("no session")?
    );

    // 3. Alice sends three messages before Bob comes online.
    let texts = ["Hi Bob!", "Are you there?", "Call me when you see this."];
    let mut in_flight = Vec::new();
    println!("3. Alice sends three messages:");
    for text in texts {
        let wire = alice_to_bob.encrypt(&mut rng, text.as_bytes())?;
        println!("   \"{text}\" -> {}", describe(&wire));
        in_flight.push(wire);
    }

    // 4. The server delivers them out of order.
    println!("\n4. The server delivers them out of order (3rd, 1st, 2nd):");
    let mut bob_to_alice = SessionRecord::new();
    for i in [2, 0, 1] {
        let plaintext = bob_to_alice.decrypt(&mut bob, &in_flight[i], now)?;
        println!("   Bob reads \"{}\"", String::from_utf8_lossy(&plaintext));
    }
    println!("   The first to arrive created Bob's side of the session and used up his one-time");
    println!("   prekey; the other two carry the same setup and land in the same session.");
    println!(
        "   Bob's one-time prekeys left: {}\n",
        bob.one_time_prekeys().count()
    );

    // 5. A copy of a message delivered again is refused.
    match bob_to_alice.decrypt(&mut bob, &in_flight[0], now) {
        Err(e @ DecryptError::Duplicate { .. }) => {
            println!("5. The server replays Alice's first message: refused ({e}).\n")
        }
        other => return Err(format!("a replay must be refused, got {other:?}").into()),
    }

    // 6. Bob answers: the conversation turns, and both sides ratchet to fresh keys.
    let reply = bob_to_alice.encrypt(&mut rng, b"Hey Alice, I'm here now.")?;
    println!("6. Bob answers -> {}", describe(&reply));
    let plaintext = alice_to_bob.decrypt(&mut alice, &reply, now)?;
    println!("   Alice reads \"{}\"", String::from_utf8_lossy(&plaintext));
    let next = alice_to_bob.encrypt(&mut rng, b"Great, talk soon!")?;
    println!(
        "   Alice's next message is a plain {} (no setup any more)",
        describe(&next)
    );
    println!(
        "   Bob reads \"{}\"\n",
        String::from_utf8_lossy(&bob_to_alice.decrypt(&mut bob, &next, now)?)
    );

    // 7. A message lost in transit does not stop the conversation; it still decrypts later.
    let lost = bob_to_alice.encrypt(&mut rng, b"(this one is delayed)")?;
    let after = bob_to_alice.encrypt(&mut rng, b"Did you get my last message?")?;
    println!("7. Bob sends two messages; the first is delayed.");
    println!(
        "   Alice reads \"{}\"",
        String::from_utf8_lossy(&alice_to_bob.decrypt(&mut alice, &after, now)?)
    );
    println!(
        "   (her session keeps {} skipped message key for the delayed one)",
        alice_to_bob.session().map_or(0, |s| s.skipped_key_count())
    );
    println!(
        "   The delayed message arrives: \"{}\"\n",
        String::from_utf8_lossy(&alice_to_bob.decrypt(&mut alice, &lost, now)?)
    );

    // 8. A tampered message is rejected, and nothing changes.
    let mut tampered = bob_to_alice.encrypt(&mut rng, b"Meet at 10")?;
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    match alice_to_bob.decrypt(&mut alice, &tampered, now) {
        Err(e) => println!("8. A message modified in transit is refused: {e}\n"),
        Ok(_) => return Err("a tampered message must be refused".into()),
    }

    // 9. Apps store state sealed under a key from the platform key store.
    let storage_key = StorageKey::generate(&mut rng);
    let sealed = alice_to_bob.seal(&storage_key, &mut rng);
    let mut restored = SessionRecord::unseal(&sealed, &storage_key)?;
    let wire = restored.encrypt(&mut rng, b"Sent after an app restart")?;
    println!(
        "9. Alice's app seals her session ({} bytes), restarts and restores it.",
        sealed.len()
    );
    println!(
        "   Bob reads \"{}\"",
        String::from_utf8_lossy(&bob_to_alice.decrypt(&mut bob, &wire, now)?)
    );

    println!("\nDone: every message was end-to-end encrypted with forward secrecy.");
    Ok(())
}
