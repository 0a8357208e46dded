//! ratchetbox for browsers and Node, through wasm-bindgen.
//!
//! A [`Device`] keeps its state in an in-memory store; `exportState()` returns that state as
//! bytes (sealed under the device's storage key) for the app to keep, in IndexedDB or a
//! file, and `Device.open(state, storageKey)` carries on from them. Export after every call
//! that changes state, before delivering what it returned.
//!
//! Every failure is thrown as an `Error` named `RatchetboxError` whose `kind` says what the
//! app should do (`"Ignore"`, `"DropForged"`, `"ShowToPerson"`, `"RepairSession"`,
//! `"RetryLater"`, `"CallerBug"`, `"Internal"`), with `addresses` and `newIdentityKey` where
//! they apply; no message names a secret. Times are the JavaScript clock's, in Unix seconds;
//! random numbers come from `crypto.getRandomValues` (getrandom's `wasm_js` backend).
//!
//! A panic inside Rust (a bug) cannot unwind on `wasm32-unknown-unknown`. Instead, the panic
//! hook this module installs throws a `RatchetboxError` of kind `"Internal"` with
//! `reloaded: true` out of the call, and `guardModule` (`js/guard.mjs`, the supported way to
//! load the module) replaces the instance with a fresh one at once: the module goes on
//! working, the devices it held in memory are gone, and `Device` objects made before the
//! failure throw `"Internal"`. Open them again from their last exported state, which the
//! failed call did not change.
#![forbid(unsafe_code)]

use common::{DeviceHandle, Failure, Zeroizing, guard};
use js_sys::{Array, Object, Reflect, Uint8Array};
use ratchetbox::{MemoryStore, Timestamp};
use wasm_bindgen::prelude::*;

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &'static str = r#"
/** What the app should do about a failure. */
export type ErrorKind = "Ignore" | "DropForged" | "ShowToPerson" | "RepairSession" | "RetryLater" | "CallerBug" | "Internal";
/** Every exception thrown by ratchetbox: `name` is "RatchetboxError". */
export interface RatchetboxError extends Error {
  kind: ErrorKind;
  /** The devices concerned (those without a session for "RepairSession" after a send). */
  addresses: Address[];
  /** A contact's new identity key ("ShowToPerson" for a changed key). */
  newIdentityKey?: Uint8Array;
  /** True after a bug inside the module ("Internal"): the module was reloaded, and devices
   * must be opened again from their last exported state. */
  reloaded?: boolean;
}
export interface Address { userId: string; deviceId: number; }
export interface OutgoingMessage { to: Address; message: Uint8Array; }
export interface SentMessages { messages: OutgoingMessage[]; sentAt: number; expiresAt?: number; }
export interface ReceivedMessage {
  body: Uint8Array; attachments: Uint8Array[]; sentAt: number; receivedAt: number;
  timerSeconds: number; timerChanged: boolean; expiresAt?: number;
}
export interface PreKeyStatus {
  signedPrekeyId?: number; lastResortKemPrekeyId?: number; oneTimePrekeys?: number;
  newestOneTimePrekeyId?: number; oneTimeKemPrekeys?: number; newestOneTimeKemPrekeyId?: number;
}
export interface SafetyNumber { display: string; scannable: Uint8Array; }
export type ScanResult = "Match" | "Mismatch" | "DifferentVersion";
export type Trust = "FirstUse" | "Verified" | "Changed";
export interface Peer { identityKey: Uint8Array; trust: Trust; }
export interface SealedAttachment { pointer: Uint8Array; sealed: Uint8Array; }
export interface AttachmentInfo { contentType: string; fileName: string; plaintextLen: number; locator: Uint8Array; }
/** A device restored from a backup; send `prekeyUpload` to the server at once. */
export interface RestoredDevice { device: Device; prekeyUpload: Uint8Array; backupCreatedAt: number; backupGeneration: number; }
export interface GroupSent { message: Uint8Array; distributions: OutgoingMessage[]; sentAt: number; expiresAt?: number; }
"#;

type Result<T> = std::result::Result<T, JsValue>;

/// What a panic throws (a fixed text: a panic's own message never reaches the app, so it
/// cannot carry a secret).
const PANIC_MESSAGE: &str = "ratchetbox failed internally (a bug, please report it); the module was reloaded: \
     open your devices again from their last exported state";

/// Runs when the module is instantiated (again after each reload): installs the panic hook.
#[wasm_bindgen(start)]
fn start() {
    std::panic::set_hook(Box::new(|_| {
        let e = error(Failure::internal(PANIC_MESSAGE));
        // Tells `guardModule` to replace this instance before the next call: it may hold
        // half-done work (a borrowed object, a shadow stack that was not unwound).
        set(e.unchecked_ref(), "reloaded", true);
        // Unwinds the WebAssembly frames up to the JavaScript caller (no Rust destructor
        // runs: the instance is discarded).
        wasm_bindgen::throw_val(e);
    }));
}

/// The bindings benchmark's in-module loop (bindings/bench/run.py): the calls of
/// `bench_native.rs` made from Rust inside the module, with no crossing into JavaScript
/// but the clock. Returns the median nanoseconds of `send` and of `receive` of a
/// `size`-byte body. Only in builds with the `bench` feature.
#[cfg(feature = "bench")]
#[wasm_bindgen(js_name = benchInsideModule)]
pub fn bench_inside_module(size: usize, iterations: usize) -> Result<Vec<f64>> {
    fn clock() -> f64 {
        // `performance.now()`, in milliseconds with sub-millisecond resolution.
        let performance = Reflect::get(&js_sys::global(), &JsValue::from_str("performance"))
            .ok()
            .and_then(|p| p.dyn_into::<Object>().ok());
        performance
            .and_then(|p| {
                Reflect::get(&p, &JsValue::from_str("now"))
                    .ok()?
                    .dyn_into::<js_sys::Function>()
                    .ok()?
                    .call0(&p)
                    .ok()?
                    .as_f64()
            })
            .unwrap_or(0.0)
    }
    fn median(mut v: Vec<f64>) -> f64 {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0) * 1e6
    }
    boundary(|| {
        let t = now();
        let mut alice =
            DeviceHandle::create(Box::new(MemoryStore::new()), &[1; 32], "alice", 1, t)?;
        let mut bob = DeviceHandle::create(Box::new(MemoryStore::new()), &[2; 32], "bob", 1, t)?;
        let upload = bob
            .prekey_upload(common::PreKeyStatus::default(), t)?
            .ok_or_else(|| Failure::internal("no first upload"))?;
        alice.process_bundle("bob", 1, &common::bundle_from_upload(&upload, 0)?)?;
        let hello = alice.send("bob", &[1], &[], b"hi", &[], t)?;
        bob.receive("alice", 1, &hello.messages[0].1, t)?;
        let reply = bob.send("alice", &[1], &[], b"hi", &[], t)?;
        alice.receive("bob", 1, &reply.messages[0].1, t)?;
        let body: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let (mut send, mut receive) = (Vec::new(), Vec::new());
        for i in 0..iterations + iterations / 10 {
            let t0 = clock();
            let sent = alice.send("bob", &[1], &[], &body, &[], now())?;
            let t1 = clock();
            bob.receive("alice", 1, &sent.messages[0].1, now())?;
            let t2 = clock();
            if i >= iterations / 10 {
                send.push(t1 - t0);
                receive.push(t2 - t1);
            }
        }
        Ok(vec![median(send), median(receive)])
    })
}

/// Panics, for the test that a panic becomes a `RatchetboxError` of kind `"Internal"` and
/// the module works again afterwards (bindings/wasm/tests/panic.test.mjs). Only in builds
/// with the `panic-test` feature.
#[cfg(feature = "panic-test")]
#[wasm_bindgen(js_name = panicForTest)]
pub fn panic_for_test() {
    panic!("a panic for the test");
}

fn set(object: &Object, key: &str, value: impl Into<JsValue>) {
    // Setting a property on a fresh plain object cannot fail.
    let _ = Reflect::set(object, &JsValue::from_str(key), &value.into());
}

fn bytes(b: &[u8]) -> JsValue {
    Uint8Array::from(b).into()
}

fn address(a: &ratchetbox::Address) -> JsValue {
    let o = Object::new();
    set(&o, "userId", a.user_id());
    set(&o, "deviceId", a.device_id());
    o.into()
}

/// The thrown value: an `Error` named `RatchetboxError` with `kind`, `addresses` and, for a
/// changed identity key, `newIdentityKey`.
fn error(f: Failure) -> JsValue {
    let e = js_sys::Error::new(&f.message);
    e.set_name("RatchetboxError");
    let o: &Object = e.as_ref();
    set(o, "kind", f.kind.name());
    set(
        o,
        "addresses",
        f.addresses.iter().map(address).collect::<Array>(),
    );
    if let Some(key) = f.new_identity_key {
        set(o, "newIdentityKey", bytes(&key));
    }
    e.into()
}

fn boundary<T>(call: impl FnOnce() -> std::result::Result<T, Failure>) -> Result<T> {
    guard(call).map_err(error)
}

fn now() -> Timestamp {
    let ms = js_sys::Date::now();
    Timestamp::from_unix_secs(if ms > 0.0 { (ms / 1000.0) as u64 } else { 0 })
}

fn number(t: u64) -> JsValue {
    JsValue::from_f64(t as f64)
}

fn byte_arrays(list: &Array) -> std::result::Result<Vec<Vec<u8>>, Failure> {
    list.iter()
        .map(|v| {
            v.dyn_into::<Uint8Array>()
                .map(|a| a.to_vec())
                .map_err(|_| Failure::caller_bug("every attachment pointer must be a Uint8Array"))
        })
        .collect()
}

fn sent(s: common::SentMessages) -> JsValue {
    let o = Object::new();
    set(&o, "messages", outgoing(&s.messages));
    set(&o, "sentAt", number(s.sent_at));
    if let Some(t) = s.expires_at {
        set(&o, "expiresAt", number(t));
    }
    o.into()
}

fn outgoing(list: &[(ratchetbox::Address, Vec<u8>)]) -> Array {
    list.iter()
        .map(|(to, message)| {
            let m = Object::new();
            set(&m, "to", address(to));
            set(&m, "message", bytes(message));
            JsValue::from(m)
        })
        .collect()
}

fn group_sent(s: common::GroupSentMessages) -> JsValue {
    let o = Object::new();
    set(&o, "message", bytes(&s.message));
    set(&o, "distributions", outgoing(&s.distributions));
    set(&o, "sentAt", number(s.sent_at));
    if let Some(t) = s.expires_at {
        set(&o, "expiresAt", number(t));
    }
    o.into()
}

fn received(r: &common::Received) -> JsValue {
    let o = Object::new();
    set(&o, "body", bytes(&r.body));
    let attachments: Array = r.attachments.iter().map(|p| bytes(p)).collect();
    set(&o, "attachments", attachments);
    set(&o, "sentAt", number(r.sent_at));
    set(&o, "receivedAt", number(r.received_at));
    set(&o, "timerSeconds", r.timer_seconds);
    set(&o, "timerChanged", r.timer_changed);
    if let Some(t) = r.expires_at {
        set(&o, "expiresAt", number(t));
    }
    o.into()
}

/// Reads a list of `{ userId, deviceId }` objects.
fn members(list: &Array) -> std::result::Result<Vec<(String, u32)>, Failure> {
    let bad = || {
        Failure::caller_bug("every member must be an Address: { userId: string, deviceId: number }")
    };
    list.iter()
        .map(|v| {
            let user = Reflect::get(&v, &JsValue::from_str("userId"))
                .ok()
                .and_then(|u| u.as_string())
                .ok_or_else(bad)?;
            let device = Reflect::get(&v, &JsValue::from_str("deviceId"))
                .ok()
                .and_then(|d| d.as_f64())
                .filter(|n| *n >= 0.0 && *n <= f64::from(u32::MAX) && n.fract() == 0.0)
                .ok_or_else(bad)?;
            Ok((user, device as u32))
        })
        .collect()
}

/// Reads an optional whole number in 0..=u32::MAX from a status object.
fn status_field(status: &JsValue, key: &str) -> std::result::Result<Option<u32>, Failure> {
    let value = Reflect::get(status, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED);
    if value.is_undefined() || value.is_null() {
        return Ok(None);
    }
    match value.as_f64() {
        Some(n) if n >= 0.0 && n <= f64::from(u32::MAX) && n.fract() == 0.0 => Ok(Some(n as u32)),
        _ => Err(Failure::caller_bug(format!(
            "PreKeyStatus.{key} must be a whole number from 0 to 4294967295"
        ))),
    }
}

fn prekey_status(status: &JsValue) -> std::result::Result<common::PreKeyStatus, Failure> {
    if status.is_undefined() || status.is_null() {
        return Ok(common::PreKeyStatus::default());
    }
    Ok(common::PreKeyStatus {
        signed_prekey_id: status_field(status, "signedPrekeyId")?,
        last_resort_kem_prekey_id: status_field(status, "lastResortKemPrekeyId")?,
        one_time_prekeys: status_field(status, "oneTimePrekeys")?.unwrap_or(0),
        newest_one_time_prekey_id: status_field(status, "newestOneTimePrekeyId")?,
        one_time_kem_prekeys: status_field(status, "oneTimeKemPrekeys")?.unwrap_or(0),
        newest_one_time_kem_prekey_id: status_field(status, "newestOneTimeKemPrekeyId")?,
    })
}

/// One installation of the app: an account and a session per peer device, in memory, with
/// `exportState()` for the app to keep. A failed call changes nothing.
#[wasm_bindgen]
pub struct Device {
    handle: DeviceHandle,
    store: MemoryStore,
}

/// `{ device, prekeyUpload, backupCreatedAt, backupGeneration }` for a restored device.
fn restored(r: common::RestoredHandle, store: MemoryStore) -> JsValue {
    let o = Object::new();
    set(&o, "prekeyUpload", bytes(&r.prekey_upload));
    set(&o, "backupCreatedAt", number(r.backup_created_at));
    set(&o, "backupGeneration", number(r.backup_generation));
    let device = Device {
        handle: r.handle,
        store,
    };
    set(&o, "device", device);
    o.into()
}

#[wasm_bindgen]
impl Device {
    /// Creates a device for `userId`/`deviceId`, its state sealed under the 32-byte
    /// `storageKey` (keep the key apart from the exported state, e.g. a non-extractable
    /// CryptoKey wrapping it).
    pub fn create(storage_key: &[u8], user_id: &str, device_id: u32) -> Result<Device> {
        boundary(|| {
            let store = MemoryStore::new();
            let handle = DeviceHandle::create(
                Box::new(store.clone()),
                storage_key,
                user_id,
                device_id,
                now(),
            )?;
            Ok(Device { handle, store })
        })
    }

    /// Opens the device from a state `exportState()` returned, with its storage key.
    pub fn open(state: &[u8], storage_key: &[u8]) -> Result<Device> {
        boundary(|| {
            let store = MemoryStore::import(state)?;
            let handle = DeviceHandle::open(Box::new(store.clone()), storage_key)?;
            Ok(Device { handle, store })
        })
    }

    /// The device's whole state, sealed under its storage key: keep it (IndexedDB, a file)
    /// after every call that changes state, and give it to `Device.open`.
    #[wasm_bindgen(js_name = exportState)]
    pub fn export_state(&self) -> Result<Uint8Array> {
        boundary(|| Ok(Uint8Array::from(self.store.export()?.as_slice())))
    }

    /// This device's address.
    #[wasm_bindgen(unchecked_return_type = "Address")]
    pub fn address(&self) -> JsValue {
        address(self.handle.address())
    }

    /// This device's identity key (public, 32 bytes).
    #[wasm_bindgen(js_name = identityKey)]
    pub fn identity_key(&self) -> Uint8Array {
        Uint8Array::from(&self.handle.identity_key()[..])
    }

    /// The state generation this handle has seen (keep it apart from the state to detect an
    /// older state with `checkGeneration`).
    pub fn generation(&self) -> u64 {
        self.handle.generation()
    }

    /// Throws "ShowToPerson" if the state is older than generation `atLeast`.
    #[wasm_bindgen(js_name = checkGeneration)]
    pub fn check_generation(&mut self, at_least: u64) -> Result<()> {
        boundary(|| self.handle.check_generation(at_least))
    }

    /// The prekey upload the server needs given what it holds (`undefined`: nothing needed).
    #[wasm_bindgen(js_name = prekeyUpload)]
    pub fn prekey_upload(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "PreKeyStatus | undefined")] server: JsValue,
    ) -> Result<Option<Uint8Array>> {
        boundary(|| {
            let status = prekey_status(&server)?;
            Ok(self
                .handle
                .prekey_upload(status, now())?
                .map(|u| Uint8Array::from(u.as_slice())))
        })
    }

    /// Starts a session with a device from its prekey bundle (bytes from the server).
    #[wasm_bindgen(js_name = processBundle)]
    pub fn process_bundle(&mut self, user_id: &str, device_id: u32, bundle: &[u8]) -> Result<()> {
        boundary(|| self.handle.process_bundle(user_id, device_id, bundle))
    }

    /// Encrypts a body and attachment pointers for every device of `userId` (`deviceIds`)
    /// and this user's other devices (`ownDeviceIds`). Throws "RepairSession" listing the
    /// devices that need a bundle first.
    #[wasm_bindgen(unchecked_return_type = "SentMessages")]
    pub fn send(
        &mut self,
        user_id: &str,
        device_ids: Vec<u32>,
        own_device_ids: Vec<u32>,
        body: &[u8],
        #[wasm_bindgen(unchecked_param_type = "Uint8Array[]")] attachments: Array,
    ) -> Result<JsValue> {
        boundary(|| {
            let attachments = byte_arrays(&attachments)?;
            let s = self.handle.send(
                user_id,
                &device_ids,
                &own_device_ids,
                body,
                &attachments,
                now(),
            )?;
            Ok(sent(s))
        })
    }

    /// Sets the conversation's disappearing-message timer (seconds, 0: off); returns the
    /// messages that tell every device.
    #[wasm_bindgen(js_name = setExpiryTimer, unchecked_return_type = "SentMessages")]
    pub fn set_expiry_timer(
        &mut self,
        user_id: &str,
        device_ids: Vec<u32>,
        own_device_ids: Vec<u32>,
        seconds: u32,
    ) -> Result<JsValue> {
        boundary(|| {
            let s = self.handle.set_expiry_timer(
                user_id,
                &device_ids,
                &own_device_ids,
                seconds,
                now(),
            )?;
            Ok(sent(s))
        })
    }

    /// The conversation's timer with `userId`, seconds (0: off).
    #[wasm_bindgen(js_name = expiryTimer)]
    pub fn expiry_timer(&mut self, user_id: &str) -> Result<u32> {
        boundary(|| self.handle.expiry_timer(user_id))
    }

    /// Decrypts a message from `userId`/`deviceId`.
    #[wasm_bindgen(unchecked_return_type = "ReceivedMessage")]
    pub fn receive(&mut self, user_id: &str, device_id: u32, message: &[u8]) -> Result<JsValue> {
        boundary(|| {
            let r = self.handle.receive(user_id, device_id, message, now())?;
            Ok(received(&r))
        })
    }

    /// Creates a group of this device and the member devices `members` (this device is
    /// ignored if listed); returns its 32-byte id. Give the id and the list to the members
    /// through the app; each calls `setGroupMembers`.
    #[wasm_bindgen(js_name = createGroup)]
    pub fn create_group(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "Address[]")] members: Array,
    ) -> Result<Uint8Array> {
        boundary(|| {
            let members = self::members(&members)?;
            Ok(Uint8Array::from(
                self.handle.create_group(&members)?.as_slice(),
            ))
        })
    }

    /// Sets the member devices of the group `groupId` (creating it on this device if
    /// needed). A device no longer listed cannot read what this device sends afterwards.
    #[wasm_bindgen(js_name = setGroupMembers)]
    pub fn set_group_members(
        &mut self,
        group_id: &[u8],
        #[wasm_bindgen(unchecked_param_type = "Address[]")] members: Array,
    ) -> Result<()> {
        boundary(|| {
            let members = self::members(&members)?;
            self.handle.set_group_members(group_id, &members)
        })
    }

    /// The other member devices of the group.
    #[wasm_bindgen(js_name = groupMembers, unchecked_return_type = "Address[]")]
    pub fn group_members(&mut self, group_id: &[u8]) -> Result<JsValue> {
        boundary(|| {
            Ok(self
                .handle
                .group_members(group_id)?
                .iter()
                .map(address)
                .collect::<Array>()
                .into())
        })
    }

    /// Encrypts a body and attachment pointers once for the whole group: the group message
    /// for every member, and the pairwise `distributions` (deliver them first). Throws
    /// "RepairSession" naming the members that need this device's key but have no session.
    #[wasm_bindgen(js_name = sendGroup, unchecked_return_type = "GroupSent")]
    pub fn send_group(
        &mut self,
        group_id: &[u8],
        body: &[u8],
        #[wasm_bindgen(unchecked_param_type = "Uint8Array[]")] attachments: Array,
    ) -> Result<JsValue> {
        boundary(|| {
            let attachments = byte_arrays(&attachments)?;
            let s = self
                .handle
                .send_group(group_id, body, &attachments, now())?;
            Ok(group_sent(s))
        })
    }

    /// Sets the group's disappearing-message timer (seconds, 0: off); returns the group
    /// message announcing it.
    #[wasm_bindgen(js_name = setGroupTimer, unchecked_return_type = "GroupSent")]
    pub fn set_group_timer(&mut self, group_id: &[u8], seconds: u32) -> Result<JsValue> {
        boundary(|| {
            Ok(group_sent(self.handle.set_group_timer(
                group_id,
                seconds,
                now(),
            )?))
        })
    }

    /// The group's disappearing-message timer, seconds (0: off).
    #[wasm_bindgen(js_name = groupTimer)]
    pub fn group_timer(&mut self, group_id: &[u8]) -> Result<u32> {
        boundary(|| self.handle.group_timer(group_id))
    }

    /// Decrypts a group message from the member device `userId`/`deviceId`. Before the
    /// sender's key arrived (a pairwise message for `receive`) it throws "RetryLater".
    #[wasm_bindgen(js_name = receiveGroup, unchecked_return_type = "ReceivedMessage")]
    pub fn receive_group(
        &mut self,
        user_id: &str,
        device_id: u32,
        message: &[u8],
    ) -> Result<JsValue> {
        boundary(|| {
            let r = self
                .handle
                .receive_group(user_id, device_id, message, now())?;
            Ok(received(&r))
        })
    }

    /// Backs up the whole device under the recovery key written as `recoveryKeyCode` (from
    /// `generateRecoveryKey`). Keep the backup where the person keeps files, and the code
    /// apart (on paper).
    pub fn backup(&mut self, recovery_key_code: String) -> Result<Uint8Array> {
        let code = Zeroizing::new(recovery_key_code);
        boundary(|| {
            Ok(Uint8Array::from(
                self.handle.backup(&code, now())?.as_slice(),
            ))
        })
    }

    /// Backs up the whole device under a passphrase (a weak one throws "ShowToPerson").
    /// Prefer a recovery key.
    #[wasm_bindgen(js_name = backupWithPassphrase)]
    pub fn backup_with_passphrase(&mut self, passphrase: String) -> Result<Uint8Array> {
        let passphrase = Zeroizing::new(passphrase);
        boundary(|| {
            Ok(Uint8Array::from(
                self.handle
                    .backup_with_passphrase(&passphrase, now())?
                    .as_slice(),
            ))
        })
    }

    /// Restores a backup made by `backup` into a new in-memory device sealed under the
    /// 32-byte `storageKey` (a new one), with the recovery key code as the person typed it
    /// (case, spaces and dashes do not matter). A mistyped or wrong code or a damaged
    /// backup throws "ShowToPerson". Send the result's `prekeyUpload` to the server at once,
    /// and keep its device's `exportState()`.
    #[wasm_bindgen(unchecked_return_type = "RestoredDevice")]
    pub fn restore(
        storage_key: &[u8],
        backup: &[u8],
        recovery_key_code: String,
    ) -> Result<JsValue> {
        let code = Zeroizing::new(recovery_key_code);
        boundary(|| {
            let store = MemoryStore::new();
            let r =
                DeviceHandle::restore(Box::new(store.clone()), storage_key, backup, &code, now())?;
            Ok(restored(r, store))
        })
    }

    /// `restore` for a backup made by `backupWithPassphrase`.
    #[wasm_bindgen(js_name = restoreWithPassphrase, unchecked_return_type = "RestoredDevice")]
    pub fn restore_with_passphrase(
        storage_key: &[u8],
        backup: &[u8],
        passphrase: String,
    ) -> Result<JsValue> {
        let passphrase = Zeroizing::new(passphrase);
        boundary(|| {
            let store = MemoryStore::new();
            let r = DeviceHandle::restore_with_passphrase(
                Box::new(store.clone()),
                storage_key,
                backup,
                &passphrase,
                now(),
            )?;
            Ok(restored(r, store))
        })
    }

    /// The devices this device has a session with.
    #[wasm_bindgen(unchecked_return_type = "Address[]")]
    pub fn sessions(&mut self) -> Result<JsValue> {
        boundary(|| {
            Ok(self
                .handle
                .sessions()?
                .iter()
                .map(address)
                .collect::<Array>()
                .into())
        })
    }

    /// The safety number with a peer device, from the app's stable identifiers of the two
    /// people (`localId` is this user's).
    #[wasm_bindgen(js_name = safetyNumber, unchecked_return_type = "SafetyNumber")]
    pub fn safety_number(
        &mut self,
        user_id: &str,
        device_id: u32,
        local_id: &[u8],
        remote_id: &[u8],
    ) -> Result<JsValue> {
        boundary(|| {
            let n = self
                .handle
                .safety_number(user_id, device_id, local_id, remote_id)?;
            let o = Object::new();
            set(&o, "display", n.display);
            set(&o, "scannable", bytes(&n.scannable));
            Ok(o.into())
        })
    }

    /// Compares a code scanned from the peer's screen with this device's safety number.
    #[wasm_bindgen(js_name = compareScanned, unchecked_return_type = "ScanResult")]
    pub fn compare_scanned(
        &mut self,
        user_id: &str,
        device_id: u32,
        local_id: &[u8],
        remote_id: &[u8],
        scanned: &[u8],
    ) -> Result<JsValue> {
        boundary(|| {
            let result = self
                .handle
                .compare_scanned(user_id, device_id, local_id, remote_id, scanned)?;
            Ok(JsValue::from_str(match result {
                common::Scan::Match => "Match",
                common::Scan::Mismatch => "Mismatch",
                common::Scan::DifferentVersion => "DifferentVersion",
            }))
        })
    }

    /// A peer device's identity key and trust level (`undefined`: no session with it).
    #[wasm_bindgen(unchecked_return_type = "Peer | undefined")]
    pub fn peer(&mut self, user_id: &str, device_id: u32) -> Result<JsValue> {
        boundary(|| {
            Ok(match self.handle.peer(user_id, device_id)? {
                None => JsValue::UNDEFINED,
                Some(p) => {
                    let o = Object::new();
                    set(&o, "identityKey", bytes(&p.identity_key));
                    let trust = match p.trust {
                        common::TrustLevel::FirstUse => "FirstUse",
                        common::TrustLevel::Verified => "Verified",
                        common::TrustLevel::Changed => "Changed",
                    };
                    set(&o, "trust", trust);
                    o.into()
                }
            })
        })
    }

    /// Marks a peer device's identity key verified (after the safety numbers matched).
    #[wasm_bindgen(js_name = markVerified)]
    pub fn mark_verified(
        &mut self,
        user_id: &str,
        device_id: u32,
        identity_key: &[u8],
    ) -> Result<()> {
        boundary(|| self.handle.mark_verified(user_id, device_id, identity_key))
    }

    /// Accepts the changed identity key a "ShowToPerson" error reported for this device
    /// (`newIdentityKey`); the same message or bundle can then be used again.
    #[wasm_bindgen(js_name = acceptIdentityChange)]
    pub fn accept_identity_change(
        &mut self,
        user_id: &str,
        device_id: u32,
        new_identity_key: &[u8],
    ) -> Result<()> {
        boundary(|| {
            self.handle
                .accept_identity_change(user_id, device_id, new_identity_key)
        })
    }
}

/// A fresh recovery key, as the code for the person to write down (13 groups of 5
/// characters joined by `-`). The code is the key: keep it out of logs.
#[wasm_bindgen(js_name = generateRecoveryKey)]
pub fn generate_recovery_key() -> String {
    common::generate_recovery_key().to_string()
}

/// Seals `data` as an attachment: the pointer (put it in a message) and the sealed bytes
/// (upload them).
#[wasm_bindgen(js_name = sealAttachment, unchecked_return_type = "SealedAttachment")]
pub fn seal_attachment(data: &[u8], content_type: &str, file_name: &str) -> Result<JsValue> {
    boundary(|| {
        let s = common::seal_attachment(data, content_type, file_name)?;
        let o = Object::new();
        set(&o, "pointer", bytes(&s.pointer));
        set(&o, "sealed", bytes(&s.sealed));
        Ok(o.into())
    })
}

/// Opens a sealed attachment; throws unless every byte verifies against the pointer.
#[wasm_bindgen(js_name = openAttachment)]
pub fn open_attachment(pointer: &[u8], sealed: &[u8]) -> Result<Uint8Array> {
    boundary(|| {
        Ok(Uint8Array::from(
            common::open_attachment(pointer, sealed)?.as_slice(),
        ))
    })
}

/// What an attachment pointer says about its file.
#[wasm_bindgen(js_name = attachmentInfo, unchecked_return_type = "AttachmentInfo")]
pub fn attachment_info(pointer: &[u8]) -> Result<JsValue> {
    boundary(|| {
        let i = common::attachment_info(pointer)?;
        let o = Object::new();
        set(&o, "contentType", i.content_type);
        set(&o, "fileName", i.file_name);
        set(&o, "plaintextLen", number(i.plaintext_len));
        set(&o, "locator", bytes(&i.locator));
        Ok(o.into())
    })
}

/// The pointer with its locator (where the sealed file was uploaded) set.
#[wasm_bindgen(js_name = setAttachmentLocator)]
pub fn set_attachment_locator(pointer: &[u8], locator: &[u8]) -> Result<Uint8Array> {
    boundary(|| {
        Ok(Uint8Array::from(
            common::set_attachment_locator(pointer, locator)?.as_slice(),
        ))
    })
}

/// A server's job, for tests and demos: the bundle assembled from a device's first prekey
/// upload with its `index`-th one-time prekeys.
#[wasm_bindgen(js_name = bundleFromUpload)]
pub fn bundle_from_upload(upload: &[u8], index: u32) -> Result<Uint8Array> {
    boundary(|| {
        Ok(Uint8Array::from(
            common::bundle_from_upload(upload, index)?.as_slice(),
        ))
    })
}
