//! A messaging app on ratchetbox's high-level layer, as a tutorial.
//!
//! Alice has a phone and a laptop, Bob a phone and a tablet. Each device keeps its state in
//! its own SQLite file; a toy server in this process stores prekeys, device lists, message
//! queues and attachment blobs, and never sees a key or a plaintext. The story:
//!
//! 1. every device creates its state and uploads its prekeys;
//! 2. Alice's phone writes to Bob: the first send reports the devices it has no session
//!    with, the app fetches their bundles and sends again, to Bob's two devices and
//!    Alice's laptop;
//! 3. Bob's phone restarts in the middle of the conversation and carries on from its file;
//! 4. Alice turns on disappearing messages; every device of both users follows;
//! 5. Alice sends a photo (sealed, uploaded as a blob, its pointer in the message);
//! 6. Bob adds a laptop and retires his tablet; Alice's next message follows the change;
//! 7. Alice and Bob compare safety numbers, and the server's prekey stock is topped up;
//! 8. Alice, Bob and Carol chat in a group (one message encrypted once for all); Carol is
//!    removed, and cannot read what is sent after.
//! 9. Alice loses her phone and restores it on a new one from a backup she made after
//!    step 5, with the recovery key she wrote on paper.
//!
//! Run it with `cargo run --example app`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

use ratchetbox::attachment::{self, AttachmentMetadata};
use ratchetbox::backup::RecoveryKey;
use ratchetbox::group::GroupId;
use ratchetbox::rand_core::Rng;
use ratchetbox::{
    Action, Address, Content, Device, DeviceId, Error, KemPreKey, OneTimePreKey, OsRng,
    PreKeyBundle, PreKeyUpload, ServerPreKeyStatus, SignedPreKey, SqliteStore, StorageKey,
    Timestamp,
};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Messages decrypted by every app together (failed ones are not counted).
static DECRYPTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

// ---------------------------------------------------------------------------------------
// The toy server. A real one is an HTTP service with a database; this one keeps the same
// data in memory. It holds no secret: prekeys are public (and signed), messages and blobs
// are ciphertexts.
// ---------------------------------------------------------------------------------------

/// What the server stores about one device's prekeys.
struct Prekeys {
    signed: SignedPreKey,
    last_resort: KemPreKey,
    /// One-time keys are handed out once each, then deleted.
    one_time: VecDeque<OneTimePreKey>,
    one_time_kem: VecDeque<KemPreKey>,
    /// The newest id of the last batch of each one-time kind (for the status report).
    newest_one_time: Option<ratchetbox::OneTimePreKeyId>,
    newest_one_time_kem: Option<ratchetbox::KemPreKeyId>,
}

#[derive(Default)]
struct Server {
    identities: BTreeMap<Address, ratchetbox::IdentityKey>,
    prekeys: BTreeMap<Address, Prekeys>,
    devices: BTreeMap<String, BTreeSet<DeviceId>>,
    queues: BTreeMap<Address, VecDeque<(Address, Vec<u8>)>>,
    /// Group messages, one queue per device: the same bytes go to every member.
    group_queues: BTreeMap<Address, VecDeque<(Address, Vec<u8>)>>,
    blobs: BTreeMap<u64, Vec<u8>>,
    /// Messages posted so far, to check at the end that every one was decrypted.
    posted: usize,
}

impl Server {
    /// Stores an upload. The server checks every signature (`PreKeyUpload::from_bytes`) and
    /// that the identity key is the one the device registered with.
    fn upload(&mut self, from: &Address, bytes: &[u8]) -> Result<()> {
        let upload = PreKeyUpload::from_bytes(bytes)?;
        let identity = *self
            .identities
            .entry(from.clone())
            .or_insert(upload.identity_key());
        if identity != upload.identity_key() {
            return Err("an upload under another identity key".into());
        }
        self.devices
            .entry(from.user_id().to_owned())
            .or_default()
            .insert(from.device_id());
        let entry = match self.prekeys.remove(from) {
            Some(mut stored) => {
                if let Some(signed) = upload.signed_prekey() {
                    stored.signed = signed.clone();
                }
                if let Some(kem) = upload.last_resort_kem_prekey() {
                    stored.last_resort = kem.clone();
                }
                stored
            }
            None => Prekeys {
                signed: upload
                    .signed_prekey()
                    .ok_or("a first upload without signed prekey")?
                    .clone(),
                last_resort: upload
                    .last_resort_kem_prekey()
                    .ok_or("a first upload without last-resort KEM prekey")?
                    .clone(),
                one_time: VecDeque::new(),
                one_time_kem: VecDeque::new(),
                newest_one_time: None,
                newest_one_time_kem: None,
            },
        };
        let mut entry = entry;
        // A batch of one-time keys replaces the pool of its kind (docs/PROTOCOL.md 3.5).
        if let Some(last) = upload.one_time_prekeys().last() {
            entry.one_time = upload.one_time_prekeys().iter().copied().collect();
            entry.newest_one_time = Some(last.id());
        }
        if let Some(last) = upload.one_time_kem_prekeys().last() {
            entry.one_time_kem = upload.one_time_kem_prekeys().iter().cloned().collect();
            entry.newest_one_time_kem = Some(last.id());
        }
        self.prekeys.insert(from.clone(), entry);
        Ok(())
    }

    /// What the server reports to a device about its prekeys.
    fn status(&self, of: &Address) -> ServerPreKeyStatus {
        match self.prekeys.get(of) {
            None => ServerPreKeyStatus::default(),
            Some(p) => ServerPreKeyStatus {
                signed_prekey_id: Some(p.signed.id()),
                last_resort_kem_prekey_id: Some(p.last_resort.id()),
                one_time_prekeys: p.one_time.len() as u32,
                newest_one_time_prekey_id: p.newest_one_time,
                one_time_kem_prekeys: p.one_time_kem.len() as u32,
                newest_one_time_kem_prekey_id: p.newest_one_time_kem,
            },
        }
    }

    /// A bundle for a device, made from what it uploaded: the next one-time keys (each
    /// handed out once), the last-resort KEM prekey when the one-time KEM prekeys ran out.
    fn bundle(&mut self, of: &Address) -> Result<Vec<u8>> {
        let identity = *self.identities.get(of).ok_or("unknown device")?;
        let p = self.prekeys.get_mut(of).ok_or("no prekeys")?;
        let one_time = p.one_time.pop_front();
        let kem = p.one_time_kem.pop_front();
        let bundle = PreKeyBundle::assemble(
            identity,
            &p.signed,
            one_time,
            Some(kem.as_ref().unwrap_or(&p.last_resort)),
        )?;
        Ok(bundle.to_bytes())
    }

    fn devices(&self, user: &str) -> Vec<DeviceId> {
        self.devices
            .get(user)
            .map(|d| d.iter().copied().collect())
            .unwrap_or_default()
    }

    fn remove_device(&mut self, device: &Address) {
        if let Some(d) = self.devices.get_mut(device.user_id()) {
            d.remove(&device.device_id());
        }
        self.prekeys.remove(device);
        if let Some(queue) = self.queues.remove(device) {
            self.posted -= queue.len();
        }
    }

    fn post(&mut self, from: &Address, to: &Address, message: Vec<u8>) {
        self.posted += 1;
        self.queues
            .entry(to.clone())
            .or_default()
            .push_back((from.clone(), message));
    }

    fn post_group(&mut self, from: &Address, to: &Address, message: &[u8]) {
        self.posted += 1;
        self.group_queues
            .entry(to.clone())
            .or_default()
            .push_back((from.clone(), message.to_vec()));
    }

    fn fetch_group(&mut self, to: &Address) -> Vec<(Address, Vec<u8>)> {
        self.group_queues
            .get_mut(to)
            .map(|q| q.drain(..).collect())
            .unwrap_or_default()
    }

    fn fetch(&mut self, to: &Address) -> Vec<(Address, Vec<u8>)> {
        self.queues
            .get_mut(to)
            .map(|q| q.drain(..).collect())
            .unwrap_or_default()
    }
}

// ---------------------------------------------------------------------------------------
// The app. Everything it does to ratchetbox goes through one `Device` per installation.
// ---------------------------------------------------------------------------------------

struct App {
    name: &'static str,
    device: Device,
    db: PathBuf,
    /// In a real app: 32 random bytes kept in the platform's key store (Keychain, Android
    /// Keystore), never in the database.
    storage_key: [u8; 32],
}

impl App {
    /// First start: creates the device's state in a new SQLite file and uploads prekeys.
    fn install(
        name: &'static str,
        dir: &Path,
        address: Address,
        server: &mut Server,
        rng: &mut OsRng,
        now: Timestamp,
    ) -> Result<Self> {
        let db = dir.join(format!("{}.sqlite", address));
        let mut storage_key = [0u8; 32];
        rng.fill_bytes(&mut storage_key);
        let store = SqliteStore::open(&db)?;
        let device = Device::create(
            Box::new(store),
            StorageKey::from_bytes(storage_key),
            address,
            rng,
            now,
        )?;
        let mut app = Self {
            name,
            device,
            db,
            storage_key,
        };
        app.maintain_prekeys(server, rng, now)?;
        Ok(app)
    }

    /// A new phone: restores a backup into a new SQLite file under a new storage key, and
    /// sends the upload that replaces the lost phone's prekeys on the server at once.
    #[allow(clippy::too_many_arguments)]
    fn restore(
        name: &'static str,
        dir: &Path,
        backup: &[u8],
        recovery_key: &RecoveryKey,
        server: &mut Server,
        rng: &mut OsRng,
        now: Timestamp,
    ) -> Result<Self> {
        let db = dir.join(format!("{name}.sqlite"));
        let mut storage_key = [0u8; 32];
        rng.fill_bytes(&mut storage_key);
        let restored = Device::restore(
            Box::new(SqliteStore::open(&db)?),
            StorageKey::from_bytes(storage_key),
            backup,
            recovery_key,
            rng,
            now,
        )?;
        let address = restored.device.address().clone();
        println!(
            "  {name:<12} restored {address} (backup made at {} s, generation {}); uploads new prekeys ({} bytes)",
            restored.info.created_at.as_unix_secs(),
            restored.info.generation,
            restored.prekey_upload.len()
        );
        server.upload(&address, &restored.prekey_upload)?;
        Ok(Self {
            name,
            device: restored.device,
            db,
            storage_key,
        })
    }

    /// A later start: opens the state the last run left in the file.
    fn restart(self) -> Result<Self> {
        let Self {
            name,
            device,
            db,
            storage_key,
        } = self;
        let generation = device.generation();
        drop(device);
        let mut device = Device::open(
            Box::new(SqliteStore::open(&db)?),
            StorageKey::from_bytes(storage_key),
        )?;
        // The app kept the generation outside the database (here, in memory): an older
        // database (a restored backup) would be refused.
        device.check_generation(generation)?;
        Ok(Self {
            name,
            device,
            db,
            storage_key,
        })
    }

    fn address(&self) -> Address {
        self.device.address().clone()
    }

    /// Tells the device what the server holds; uploads what the device says is missing.
    fn maintain_prekeys(
        &mut self,
        server: &mut Server,
        rng: &mut OsRng,
        now: Timestamp,
    ) -> Result<()> {
        let address = self.address();
        if let Some(upload) = self
            .device
            .prekey_maintenance(rng, now, server.status(&address))?
        {
            println!(
                "  {:<12} uploads prekeys ({} bytes)",
                self.name,
                upload.len()
            );
            server.upload(&address, &upload)?;
        }
        Ok(())
    }

    /// Sends `content` to every device of `user` and to this user's other devices. A
    /// device without a session is reported by the first try; the app fetches its bundle
    /// and tries again.
    fn send(
        &mut self,
        server: &mut Server,
        rng: &mut OsRng,
        user: &str,
        content: &Content,
        now: Timestamp,
    ) -> Result<()> {
        let me = self.address();
        let theirs = server.devices(user);
        let mine = server.devices(me.user_id());
        let sent = loop {
            match self.device.send(rng, user, &theirs, &mine, content, now) {
                Ok(sent) => break sent,
                Err(Error::MissingSessions { addresses }) => {
                    for address in addresses {
                        println!(
                            "  {:<12} has no session with {address}: fetches its bundle",
                            self.name
                        );
                        let bundle = server.bundle(&address)?;
                        self.device.process_bundle(rng, &address, &bundle)?;
                    }
                }
                Err(e) => return Err(e.into()),
            }
        };
        for out in sent.messages {
            println!(
                "  {:<12} -> {:<8} {} bytes",
                self.name,
                out.to.to_string(),
                out.message.len()
            );
            server.post(&me, &out.to, out.message);
        }
        Ok(())
    }

    /// Fetches and decrypts the queued messages; returns their contents. Errors are handled
    /// by their action, as a real app would.
    fn check_inbox(
        &mut self,
        server: &mut Server,
        rng: &mut OsRng,
        now: Timestamp,
    ) -> Result<Vec<Content>> {
        let mut contents = Vec::new();
        let fetched = server.fetch(&self.address());
        for (from, message) in fetched {
            match self.device.receive(rng, &from, &message, now) {
                Ok(received) => {
                    DECRYPTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let body = String::from_utf8_lossy(received.content().body()).into_owned();
                    let timer = match received.timer().seconds() {
                        0 => String::new(),
                        s => format!(" (disappears {s} s after reading)"),
                    };
                    if received.content().group_distribution().is_some() {
                        println!("  {:<12} <- {from}: a group key", self.name);
                    } else if body.is_empty() && received.content().attachments().is_empty() {
                        println!(
                            "  {:<12} <- {from}: timer set to {} s",
                            self.name,
                            received.timer().seconds()
                        );
                    } else {
                        println!("  {:<12} <- {from}: {body:?}{timer}", self.name);
                    }
                    contents.push(received.into_content());
                }
                Err(e) => match e.action() {
                    Action::Ignore => {
                        println!("  {:<12} ignores a message from {from}: {e}", self.name)
                    }
                    Action::DropForged => println!(
                        "  {:<12} drops a forged message from {from}: {e}",
                        self.name
                    ),
                    Action::ShowToPerson => println!("  {:<12} must show: {e}", self.name),
                    Action::RepairSession => {
                        println!("  {:<12} repairs the session with {from}: {e}", self.name)
                    }
                    Action::RetryLater => println!("  {:<12} will retry later: {e}", self.name),
                    _ => return Err(e.into()),
                },
            }
        }
        Ok(contents)
    }
}

impl App {
    /// Sends `content` to a group: one group message for every member, plus the group key
    /// for the members that lack it (over pairwise sessions, fetching bundles as needed).
    /// Returns the group message.
    fn send_group(
        &mut self,
        server: &mut Server,
        rng: &mut OsRng,
        group: &GroupId,
        text: &str,
        now: Timestamp,
    ) -> Result<Vec<u8>> {
        let me = self.address();
        let sent = loop {
            match self.device.send_group(rng, group, &Content::new(text), now) {
                Ok(sent) => break sent,
                Err(Error::MissingSessions { addresses }) => {
                    for address in addresses {
                        let bundle = server.bundle(&address)?;
                        self.device.process_bundle(rng, &address, &bundle)?;
                    }
                }
                Err(e) => return Err(e.into()),
            }
        };
        for out in sent.distributions {
            println!(
                "  {:<12} -> {:<8} the group key ({} bytes, pairwise)",
                self.name,
                out.to.to_string(),
                out.message.len()
            );
            server.post(&me, &out.to, out.message);
        }
        let members = self.device.group_members(group)?;
        println!(
            "  {:<12} -> group   {text:?}: one {} byte message for {} device{}",
            self.name,
            sent.message.len(),
            members.len(),
            if members.len() == 1 { "" } else { "s" }
        );
        for to in &members {
            server.post_group(&me, to, &sent.message);
        }
        Ok(sent.message)
    }

    /// Takes in pairwise messages (group keys among them), then group messages.
    fn check_group_inbox(
        &mut self,
        server: &mut Server,
        rng: &mut OsRng,
        now: Timestamp,
    ) -> Result<()> {
        self.check_inbox(server, rng, now)?;
        for (from, message) in server.fetch_group(&self.address()) {
            let received = self.device.receive_group(rng, &from, &message, now)?;
            DECRYPTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let body = String::from_utf8_lossy(received.content().body()).into_owned();
            println!("  {:<12} <- {from} in the group: {body:?}", self.name);
        }
        Ok(())
    }
}

fn main() -> Result<()> {
    let mut rng = OsRng::new();
    let mut now = Timestamp::now();
    let dir = std::env::temp_dir().join(format!("ratchetbox-app-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = run(&dir, &mut rng, &mut now);
    std::fs::remove_dir_all(&dir)?;
    result
}

fn run(dir: &Path, rng: &mut OsRng, now: &mut Timestamp) -> Result<()> {
    let mut server = Server::default();
    let a = |user: &str, device| Address::new(user, device);

    println!("1. Every device creates its state (one SQLite file each) and uploads prekeys");
    let mut alice_phone = App::install("alice-phone", dir, a("alice", 1)?, &mut server, rng, *now)?;
    let mut alice_laptop =
        App::install("alice-laptop", dir, a("alice", 2)?, &mut server, rng, *now)?;
    let mut bob_phone = App::install("bob-phone", dir, a("bob", 1)?, &mut server, rng, *now)?;
    let mut bob_tablet = App::install("bob-tablet", dir, a("bob", 2)?, &mut server, rng, *now)?;

    println!("\n2. Alice's phone writes to Bob");
    alice_phone.send(
        &mut server,
        rng,
        "bob",
        &Content::new("Hi Bob! Lunch at noon?"),
        *now,
    )?;
    for app in [&mut bob_phone, &mut bob_tablet, &mut alice_laptop] {
        app.check_inbox(&mut server, rng, *now)?;
    }
    bob_tablet.send(
        &mut server,
        rng,
        "alice",
        &Content::new("Sure, see you there."),
        *now,
    )?;
    for app in [&mut alice_phone, &mut alice_laptop, &mut bob_phone] {
        app.check_inbox(&mut server, rng, *now)?;
    }

    println!("\n3. Bob's phone restarts mid-conversation and carries on from its file");
    alice_phone.send(
        &mut server,
        rng,
        "bob",
        &Content::new("Bring the book?"),
        *now,
    )?;
    let mut bob_phone = bob_phone.restart()?;
    bob_phone.check_inbox(&mut server, rng, *now)?;
    bob_phone.send(&mut server, rng, "alice", &Content::new("Will do."), *now)?;
    for app in [&mut alice_phone, &mut alice_laptop, &mut bob_tablet] {
        app.check_inbox(&mut server, rng, *now)?;
    }

    println!("\n4. Alice turns on disappearing messages (one day)");
    let (theirs, mine) = (server.devices("bob"), server.devices("alice"));
    let sent = alice_phone
        .device
        .set_expiry_timer(rng, "bob", &theirs, &mine, 86_400, *now)?;
    for out in sent.messages {
        server.post(&alice_phone.address(), &out.to, out.message);
    }
    for app in [&mut bob_phone, &mut bob_tablet, &mut alice_laptop] {
        app.check_inbox(&mut server, rng, *now)?;
    }
    bob_phone.send(&mut server, rng, "alice", &Content::new("Noted."), *now)?;
    alice_phone.check_inbox(&mut server, rng, *now)?;
    println!(
        "  bob-tablet's setting for the conversation: {} s",
        bob_tablet.device.expiry_timer("alice")?.seconds()
    );

    println!("\n5. Alice sends a photo");
    let photo: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let (mut pointer, sealed) = attachment::seal(
        rng,
        &photo,
        AttachmentMetadata::new("image/jpeg", "menu.jpg")?,
    )?;
    let blob_id = server.blobs.len() as u64;
    println!(
        "  alice-phone  uploads a {} byte blob (the server sees only ciphertext)",
        sealed.len()
    );
    server.blobs.insert(blob_id, sealed);
    pointer.set_locator(blob_id.to_be_bytes().to_vec())?;
    let mut content = Content::new("Today's menu");
    content.add_attachment(pointer)?;
    alice_phone.send(&mut server, rng, "bob", &content, *now)?;
    for app in [&mut bob_phone, &mut bob_tablet, &mut alice_laptop] {
        for content in app.check_inbox(&mut server, rng, *now)? {
            for pointer in content.attachments() {
                let id = u64::from_be_bytes(pointer.locator().try_into()?);
                let opened = attachment::open(pointer, &server.blobs[&id])?;
                assert_eq!(opened, photo);
                println!(
                    "  {:<12} opened {} ({} bytes, verified)",
                    app.name,
                    pointer.file_name(),
                    opened.len()
                );
            }
        }
    }

    // Alice backs up her phone. The recovery key is shown once; she writes it on paper.
    let recovery_key = RecoveryKey::generate(rng);
    let on_paper = recovery_key.to_code();
    let backup = alice_phone.device.backup(rng, &recovery_key, *now)?;
    drop(recovery_key);
    println!(
        "  alice-phone  backs up ({} bytes); Alice writes down {}",
        backup.len(),
        &*on_paper
    );

    println!("\n6. Bob adds a laptop and retires his tablet");
    *now = now.saturating_add_secs(3_600);
    let mut bob_laptop = App::install("bob-laptop", dir, a("bob", 3)?, &mut server, rng, *now)?;
    server.remove_device(&bob_tablet.address());
    drop(bob_tablet);
    alice_phone.send(
        &mut server,
        rng,
        "bob",
        &Content::new("Welcome, new laptop"),
        *now,
    )?;
    for app in [&mut bob_phone, &mut bob_laptop, &mut alice_laptop] {
        app.check_inbox(&mut server, rng, *now)?;
    }
    let sessions: Vec<String> = alice_phone
        .device
        .sessions()?
        .iter()
        .map(ToString::to_string)
        .collect();
    println!(
        "  alice-phone  now has sessions with {}",
        sessions.join(", ")
    );

    println!("\n7. Safety numbers, and prekey upkeep");
    let alice_side = alice_phone
        .device
        .safety_number(&bob_phone.address(), b"alice", b"bob")?;
    let bob_side = bob_phone
        .device
        .safety_number(&alice_phone.address(), b"bob", b"alice")?;
    println!("  alice-phone shows {alice_side}");
    println!("  bob-phone   shows {bob_side}");
    let scanned = alice_side.compare_scanned(&bob_side.scannable())?;
    let verdict = match scanned {
        ratchetbox::ScanResult::Match => "the numbers match: Alice marks Bob's phone verified",
        _ => "NO MATCH: do not trust this conversation",
    };
    println!("  Alice scans Bob's code: {verdict}");
    alice_phone.device.mark_verified(
        rng,
        &bob_phone.address(),
        &bob_phone.device.identity_key(),
    )?;
    *now = now.saturating_add_secs(3 * 86_400);
    for app in [
        &mut alice_phone,
        &mut alice_laptop,
        &mut bob_phone,
        &mut bob_laptop,
    ] {
        app.maintain_prekeys(&mut server, rng, *now)?;
    }

    println!("\n8. A group: Alice, Bob and Carol (one device each here); then Carol is removed");
    let mut carol_phone = App::install("carol-phone", dir, a("carol", 1)?, &mut server, rng, *now)?;
    let trio = [
        alice_phone.address(),
        bob_phone.address(),
        carol_phone.address(),
    ];
    // The app tells every member the group's id and members (its own business, for example
    // through its server); each device records them.
    let group = alice_phone.device.create_group(rng, &trio)?;
    bob_phone.device.set_group_members(rng, &group, &trio)?;
    carol_phone.device.set_group_members(rng, &group, &trio)?;
    alice_phone.send_group(&mut server, rng, &group, "Dinner on Friday?", *now)?;
    for app in [&mut bob_phone, &mut carol_phone] {
        app.check_group_inbox(&mut server, rng, *now)?;
    }
    carol_phone.send_group(&mut server, rng, &group, "Count me in!", *now)?;
    for app in [&mut alice_phone, &mut bob_phone] {
        app.check_group_inbox(&mut server, rng, *now)?;
    }
    println!("  Carol leaves the group: Alice's and Bob's devices drop her");
    let duo = [alice_phone.address(), bob_phone.address()];
    alice_phone.device.set_group_members(rng, &group, &duo)?;
    bob_phone.device.set_group_members(rng, &group, &duo)?;
    let after =
        alice_phone.send_group(&mut server, rng, &group, "Surprise party for Carol!", *now)?;
    bob_phone.check_group_inbox(&mut server, rng, *now)?;
    // Suppose Carol got a copy anyway (from the server, or by listening on the network).
    match carol_phone
        .device
        .receive_group(rng, &alice_phone.address(), &after, *now)
    {
        Ok(_) => return Err("a removed member read a message sent after her removal".into()),
        Err(e) => println!(
            "  carol-phone  cannot read it: {e} (Alice's device replaced its group key, and the new one went to Bob only)"
        ),
    }

    println!("\n9. Alice loses her phone and restores on a new one");
    // The phone is gone, with its database and storage key. The backup is older than what
    // the phone knew: it has no session with Bob's laptop, and its sessions with the others
    // may already have been used to send, so the restored device never sends on them.
    drop(alice_phone);
    *now = now.saturating_add_secs(3_600);
    let typed = RecoveryKey::from_code(&on_paper.to_lowercase())?;
    let mut alice_new_phone =
        App::restore("alice-new", dir, &backup, &typed, &mut server, rng, *now)?;
    // Her first message starts new sessions with every device, from fresh bundles.
    alice_new_phone.send(
        &mut server,
        rng,
        "bob",
        &Content::new("New phone, same me"),
        *now,
    )?;
    for app in [&mut bob_phone, &mut bob_laptop, &mut alice_laptop] {
        app.check_inbox(&mut server, rng, *now)?;
    }
    bob_phone.send(
        &mut server,
        rng,
        "alice",
        &Content::new("Welcome back!"),
        *now,
    )?;
    for app in [&mut alice_new_phone, &mut alice_laptop, &mut bob_laptop] {
        app.check_inbox(&mut server, rng, *now)?;
    }
    // Same identity key: Bob's safety number for Alice has not changed.
    let after = bob_phone
        .device
        .safety_number(&alice_new_phone.address(), b"bob", b"alice")?;
    assert_eq!(after.to_string(), bob_side.to_string());
    println!("  bob-phone    still shows {after}: same identity, nothing to re-verify");

    let decrypted = DECRYPTED.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(decrypted, server.posted, "a message was lost");
    println!(
        "\nAll {decrypted} messages decrypted on the device they were for, through a restart, device changes, a group and a restore."
    );
    Ok(())
}
