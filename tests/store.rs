//! The storage backends (`ratchetbox::store`).
//!
//! Each property has one generic body, run on the memory store (`memory::NAME`) and, with
//! the `sqlite` feature, on the SQLite store in a file (`sqlite::NAME`). Then what only one
//! backend has: the memory store's lock, SQLite's files, schema, locks and crashes, and two
//! processes on one file. Last, the failing-store wrapper of `tests/common`.

#[path = "common/failing_store.rs"]
mod failing_store;
#[cfg(feature = "sqlite")]
#[path = "common/processes.rs"]
mod processes;

use std::thread;
use std::time::Duration;

use failing_store::{FailingStore, injected_failure};
use ratchetbox::store::KeyValue;
use ratchetbox::{MemoryStore, Store, StoreError, Table};

/// Every `(table, key, value)` a store holds.
type Entries = Vec<(Table, Vec<u8>, Vec<u8>)>;

/// Everything committed in `store`, table by table ([`Table::ALL`]'s order), in key order.
fn dump(store: &mut impl Store) -> Entries {
    let mut tx = store.transaction().expect("transaction");
    let mut out = Vec::new();
    for table in Table::ALL {
        for (key, value) in tx.scan(table, b"").expect("scan") {
            out.push((table, key, value));
        }
    }
    out
}

fn entries(list: &[(Table, &[u8], &[u8])]) -> Entries {
    list.iter()
        .map(|(table, key, value)| (*table, key.to_vec(), value.to_vec()))
        .collect()
}

/// Commits `list` in one transaction.
fn put_all(store: &mut impl Store, list: &[(Table, &[u8], &[u8])]) {
    let mut tx = store.transaction().expect("transaction");
    for (table, key, value) in list {
        tx.put(*table, key, value).expect("put");
    }
    tx.commit().expect("commit");
}

/// A directory of its own under the system's temporary directory, removed on drop.
#[cfg(feature = "sqlite")]
use processes::TempDir;

/// A way to get several handles on one set of data.
trait Backend {
    type Handle: Store + 'static;
    fn new(test: &str) -> Self;
    fn handle(&self) -> Self::Handle;
}

/// Clones of one [`MemoryStore`].
struct Memory(MemoryStore);

impl Backend for Memory {
    type Handle = MemoryStore;
    fn new(_test: &str) -> Self {
        Self(MemoryStore::new())
    }
    fn handle(&self) -> MemoryStore {
        self.0.clone()
    }
}

/// Connections to one SQLite file.
#[cfg(feature = "sqlite")]
struct Sqlite(TempDir);

#[cfg(feature = "sqlite")]
impl Backend for Sqlite {
    type Handle = ratchetbox::SqliteStore;
    fn new(test: &str) -> Self {
        Self(TempDir::new(test))
    }
    fn handle(&self) -> ratchetbox::SqliteStore {
        ratchetbox::SqliteStore::open(self.0.path().join("store.sqlite")).expect("open")
    }
}

/// Runs each generic test body on every backend.
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[test]
                fn $name() {
                    super::$name::<super::Memory>(stringify!($name));
                }
            )*
        }
        #[cfg(feature = "sqlite")]
        mod sqlite {
            $(
                #[test]
                fn $name() {
                    super::$name::<super::Sqlite>(stringify!($name));
                }
            )*
        }
    };
}

on_every_backend!(
    get_put_delete,
    tables_are_kept_apart,
    scan_returns_a_prefix_in_key_order,
    scan_sees_the_transactions_own_writes,
    delete_prefix_removes_and_counts,
    drop_rolls_back,
    a_failed_commit_writes_nothing_and_a_retry_writes_everything,
    a_second_handle_sees_only_committed_writes,
    two_threads_lose_no_increment,
    a_failure_at_each_write_point_leaves_the_state_unchanged,
);

fn get_put_delete<B: Backend>(test: &str) {
    let backend = B::new(test);
    let mut store = backend.handle();
    let big = vec![0xa5; 100_000];

    let mut tx = store.transaction().expect("transaction");
    assert_eq!(tx.get(Table::Session, b"k").expect("get"), None);
    tx.put(Table::Session, b"k", b"first").expect("put");
    tx.put(Table::Session, b"", b"empty key").expect("put");
    tx.put(Table::Session, b"empty value", b"").expect("put");
    tx.put(Table::Session, &[0, 0xff, 0], &big).expect("put");
    tx.commit().expect("commit");

    let mut tx = store.transaction().expect("transaction");
    assert_eq!(
        tx.get(Table::Session, b"k").expect("get"),
        Some(b"first".to_vec())
    );
    assert_eq!(
        tx.get(Table::Session, b"").expect("get"),
        Some(b"empty key".to_vec())
    );
    // An empty value is a value, not an absence.
    assert_eq!(
        tx.get(Table::Session, b"empty value").expect("get"),
        Some(vec![])
    );
    assert_eq!(
        tx.get(Table::Session, &[0, 0xff, 0]).expect("get"),
        Some(big.clone())
    );
    // A key is not a prefix of another.
    assert_eq!(tx.get(Table::Session, b"k\0").expect("get"), None);
    assert_eq!(tx.get(Table::Session, &[0, 0xff]).expect("get"), None);
    tx.put(Table::Session, b"k", b"second").expect("put");
    tx.delete(Table::Session, b"").expect("delete");
    // Deleting what is not there is no error.
    tx.delete(Table::Session, b"absent").expect("delete");
    tx.commit().expect("commit");

    assert_eq!(
        dump(&mut store),
        entries(&[
            (Table::Session, &[0, 0xff, 0], &big),
            (Table::Session, b"empty value", b""),
            (Table::Session, b"k", b"second"),
        ])
    );
}

fn tables_are_kept_apart<B: Backend>(test: &str) {
    let backend = B::new(test);
    let mut store = backend.handle();
    let mut tx = store.transaction().expect("transaction");
    for (i, table) in Table::ALL.into_iter().enumerate() {
        tx.put(table, b"same key", &[i as u8]).expect("put");
    }
    tx.commit().expect("commit");

    let mut tx = store.transaction().expect("transaction");
    assert_eq!(
        tx.get(Table::Session, b"same key").expect("get"),
        Some(vec![2])
    );
    assert_eq!(
        tx.get(Table::Group, b"same key").expect("get"),
        Some(vec![5])
    );
    tx.delete(Table::Account, b"same key").expect("delete");
    assert_eq!(
        tx.delete_prefix(Table::User, b"").expect("delete_prefix"),
        1
    );
    assert_eq!(tx.scan(Table::SkippedKey, b"").expect("scan").len(), 1);
    tx.commit().expect("commit");

    assert_eq!(
        dump(&mut store),
        entries(&[
            (Table::Meta, b"same key", &[0]),
            (Table::Session, b"same key", &[2]),
            (Table::SkippedKey, b"same key", &[3]),
            (Table::Group, b"same key", &[5]),
        ])
    );
}

/// The keys of the prefix tests, in key order: around 0x00, 0x01 and 0xff boundaries.
const KEYS: [&[u8]; 10] = [
    &[],
    &[0x00],
    &[0x01],
    &[0x01, 0x00],
    &[0x01, 0xff],
    &[0x01, 0xff, 0xff],
    &[0x02],
    &[0xff],
    &[0xff, 0xff],
    &[0xff, 0xff, 0x00],
];

/// The value stored under `key` in the prefix tests.
fn value_of(key: &[u8]) -> Vec<u8> {
    let mut value = b"value of ".to_vec();
    value.extend_from_slice(key);
    value
}

/// `(key, value_of(key))` for each key.
fn rows(keys: &[&[u8]]) -> Vec<KeyValue> {
    keys.iter()
        .map(|key| (key.to_vec(), value_of(key)))
        .collect()
}

/// Commits [`KEYS`] into `Table::Session` (in a scrambled order, over two transactions), and
/// near misses into other tables.
fn store_prefix_keys(store: &mut impl Store) {
    let mut tx = store.transaction().expect("transaction");
    for i in [7, 2, 9, 0, 5] {
        tx.put(Table::Session, KEYS[i], &value_of(KEYS[i]))
            .expect("put");
    }
    tx.commit().expect("commit");
    let mut tx = store.transaction().expect("transaction");
    for i in [4, 1, 8, 3, 6] {
        tx.put(Table::Session, KEYS[i], &value_of(KEYS[i]))
            .expect("put");
    }
    // Keys that a scan of `Session` must not return.
    tx.put(Table::Account, &[0x01], b"account").expect("put");
    tx.put(Table::SkippedKey, &[0xff, 0xff, 0xff], b"skipped")
        .expect("put");
    tx.put(Table::Meta, &[], b"meta").expect("put");
    tx.commit().expect("commit");
}

fn scan_returns_a_prefix_in_key_order<B: Backend>(test: &str) {
    let backend = B::new(test);
    let mut store = backend.handle();
    store_prefix_keys(&mut store);

    let mut tx = store.transaction().expect("transaction");
    let cases: [(&[u8], Vec<KeyValue>); 10] = [
        (&[], rows(&KEYS)),
        (&[0x00], rows(&[&[0x00]])),
        (
            &[0x01],
            rows(&[&[0x01], &[0x01, 0x00], &[0x01, 0xff], &[0x01, 0xff, 0xff]]),
        ),
        (&[0x01, 0xff], rows(&[&[0x01, 0xff], &[0x01, 0xff, 0xff]])),
        (&[0x01, 0xff, 0xff], rows(&[&[0x01, 0xff, 0xff]])),
        (
            &[0xff],
            rows(&[&[0xff], &[0xff, 0xff], &[0xff, 0xff, 0x00]]),
        ),
        (&[0xff, 0xff], rows(&[&[0xff, 0xff], &[0xff, 0xff, 0x00]])),
        // Only in another table.
        (&[0xff, 0xff, 0xff], vec![]),
        (&[0x03], vec![]),
        // Longer than every key it could match.
        (&[0x01, 0x00, 0x00], vec![]),
    ];
    for (prefix, expected) in cases {
        assert_eq!(
            tx.scan(Table::Session, prefix).expect("scan"),
            expected,
            "prefix {prefix:02x?}"
        );
    }
    assert_eq!(tx.scan(Table::Group, b"").expect("scan"), vec![]);
}

fn scan_sees_the_transactions_own_writes<B: Backend>(test: &str) {
    let backend = B::new(test);
    let mut store = backend.handle();
    store_prefix_keys(&mut store);

    let mut tx = store.transaction().expect("transaction");
    tx.put(Table::Session, &[0x01, 0x80], &value_of(&[0x01, 0x80]))
        .expect("put");
    tx.delete(Table::Session, &[0x01, 0x00]).expect("delete");
    tx.put(Table::Session, &[0x01, 0xff], b"overwritten")
        .expect("put");
    tx.put(
        Table::Session,
        &[0xff, 0xff, 0xff, 0x01],
        &value_of(&[0xff, 0xff, 0xff, 0x01]),
    )
    .expect("put");
    tx.delete(Table::Session, &[]).expect("delete");

    assert_eq!(tx.get(Table::Session, &[0x01, 0x00]).expect("get"), None);
    assert_eq!(
        tx.get(Table::Session, &[0x01, 0xff]).expect("get"),
        Some(b"overwritten".to_vec())
    );
    assert_eq!(
        tx.scan(Table::Session, &[0x01]).expect("scan"),
        vec![
            (vec![0x01], value_of(&[0x01])),
            (vec![0x01, 0x80], value_of(&[0x01, 0x80])),
            (vec![0x01, 0xff], b"overwritten".to_vec()),
            (vec![0x01, 0xff, 0xff], value_of(&[0x01, 0xff, 0xff])),
        ]
    );
    assert_eq!(
        tx.scan(Table::Session, &[0xff, 0xff, 0xff]).expect("scan"),
        rows(&[&[0xff, 0xff, 0xff, 0x01]])
    );
    let all_keys: Vec<Vec<u8>> = tx
        .scan(Table::Session, &[])
        .expect("scan")
        .into_iter()
        .map(|(key, _)| key)
        .collect();
    let expected: [&[u8]; 10] = [
        &[0x00],
        &[0x01],
        &[0x01, 0x80],
        &[0x01, 0xff],
        &[0x01, 0xff, 0xff],
        &[0x02],
        &[0xff],
        &[0xff, 0xff],
        &[0xff, 0xff, 0x00],
        &[0xff, 0xff, 0xff, 0x01],
    ];
    assert_eq!(all_keys, expected.map(<[u8]>::to_vec));
}

fn delete_prefix_removes_and_counts<B: Backend>(test: &str) {
    let backend = B::new(test);
    let mut store = backend.handle();
    store_prefix_keys(&mut store);

    let mut tx = store.transaction().expect("transaction");
    // Uncommitted writes count too: one added under the prefix, one removed.
    tx.put(Table::Session, &[0x01, 0x80], b"new").expect("put");
    tx.delete(Table::Session, &[0x01, 0xff, 0xff])
        .expect("delete");
    assert_eq!(
        tx.delete_prefix(Table::Session, &[0x01])
            .expect("delete_prefix"),
        4
    );
    assert_eq!(
        tx.delete_prefix(Table::Session, &[0x01])
            .expect("delete_prefix"),
        0
    );
    // A prefix of 0xff bytes has no successor.
    assert_eq!(
        tx.delete_prefix(Table::Session, &[0xff, 0xff])
            .expect("delete_prefix"),
        2
    );
    assert_eq!(
        tx.delete_prefix(Table::Session, &[0xff, 0xff, 0xff])
            .expect("delete_prefix"),
        0
    );
    assert_eq!(tx.get(Table::Session, &[0x01]).expect("get"), None);
    // Written again after its prefix was removed.
    tx.put(Table::Session, &[0x01, 0x02], b"again")
        .expect("put");
    tx.commit().expect("commit");

    let mut expected = entries(&[
        (Table::Meta, &[], b"meta"),
        (Table::Account, &[0x01], b"account"),
    ]);
    for key in [&[][..], &[0x00]] {
        expected.push((Table::Session, key.to_vec(), value_of(key)));
    }
    expected.push((Table::Session, vec![0x01, 0x02], b"again".to_vec()));
    for key in [&[0x02][..], &[0xff]] {
        expected.push((Table::Session, key.to_vec(), value_of(key)));
    }
    expected.push((
        Table::SkippedKey,
        vec![0xff, 0xff, 0xff],
        b"skipped".to_vec(),
    ));
    assert_eq!(dump(&mut store), expected);

    // The empty prefix removes the whole table, and only it.
    let mut tx = store.transaction().expect("transaction");
    assert_eq!(
        tx.delete_prefix(Table::Session, &[])
            .expect("delete_prefix"),
        5
    );
    tx.commit().expect("commit");
    assert_eq!(
        dump(&mut store),
        entries(&[
            (Table::Meta, &[], b"meta"),
            (Table::Account, &[0x01], b"account"),
            (Table::SkippedKey, &[0xff, 0xff, 0xff], b"skipped"),
        ])
    );
}

fn drop_rolls_back<B: Backend>(test: &str) {
    let backend = B::new(test);
    let mut store = backend.handle();
    let base = [
        (Table::Account, &b""[..], &b"account"[..]),
        (Table::Session, b"bob.1", b"record 1"),
        (Table::SkippedKey, b"bob.1/7", b"key 7"),
        (Table::SkippedKey, b"bob.1/8", b"key 8"),
    ];
    put_all(&mut store, &base);

    let mut tx = store.transaction().expect("transaction");
    tx.put(Table::Account, b"", b"changed").expect("put");
    tx.put(Table::Session, b"carol.1", b"new").expect("put");
    tx.delete(Table::Session, b"bob.1").expect("delete");
    assert_eq!(
        tx.delete_prefix(Table::SkippedKey, b"bob.1/")
            .expect("delete_prefix"),
        2
    );
    drop(tx);

    assert_eq!(dump(&mut store), entries(&base));
    // Another handle agrees.
    assert_eq!(dump(&mut backend.handle()), entries(&base));
}

fn a_failed_commit_writes_nothing_and_a_retry_writes_everything<B: Backend>(test: &str) {
    let backend = B::new(test);
    let base = [(Table::Session, &b"bob.1"[..], &b"record 1"[..])];
    put_all(&mut backend.handle(), &base);

    let write = |store: &mut dyn Store| -> Result<(), StoreError> {
        let mut tx = store.transaction()?;
        tx.put(Table::Account, b"", b"account")?;
        tx.put(Table::Session, b"bob.1", b"record 2")?;
        tx.put(Table::SkippedKey, b"bob.1/3", b"key 3")?;
        tx.commit()
    };
    // Three puts, then the commit: the fourth write point.
    let mut store = FailingStore::failing_at(backend.handle(), 4);
    assert_eq!(write(&mut store), Err(injected_failure(4)));
    assert_eq!(dump(&mut backend.handle()), entries(&base));

    assert_eq!(write(&mut store), Ok(()));
    let after = entries(&[
        (Table::Account, b"", b"account"),
        (Table::Session, b"bob.1", b"record 2"),
        (Table::SkippedKey, b"bob.1/3", b"key 3"),
    ]);
    assert_eq!(dump(&mut backend.handle()), after);
    assert_eq!(dump(store.inner_mut()), after);
}

fn a_second_handle_sees_only_committed_writes<B: Backend>(test: &str) {
    let backend = B::new(test);
    let mut first = backend.handle();
    put_all(&mut first, &[(Table::Session, b"bob.1", b"committed")]);

    // The other handle's transaction starts while this one is open, so it waits until this
    // one ends: whatever the timing, it sees the state after this one.
    let read_in_other_thread = |handle: B::Handle| {
        thread::spawn(move || {
            let mut handle = handle;
            let mut tx = handle.transaction().expect("transaction");
            (
                tx.get(Table::Session, b"bob.1").expect("get"),
                tx.get(Table::Session, b"bob.2").expect("get"),
            )
        })
    };

    let mut tx = first.transaction().expect("transaction");
    tx.put(Table::Session, b"bob.1", b"uncommitted")
        .expect("put");
    tx.put(Table::Session, b"bob.2", b"uncommitted")
        .expect("put");
    let reader = read_in_other_thread(backend.handle());
    thread::sleep(Duration::from_millis(20));
    drop(tx);
    assert_eq!(
        reader.join().expect("reader"),
        (Some(b"committed".to_vec()), None)
    );

    let mut tx = first.transaction().expect("transaction");
    tx.put(Table::Session, b"bob.2", b"second").expect("put");
    let reader = read_in_other_thread(backend.handle());
    thread::sleep(Duration::from_millis(20));
    tx.commit().expect("commit");
    assert_eq!(
        reader.join().expect("reader"),
        (Some(b"committed".to_vec()), Some(b"second".to_vec()))
    );
}

/// Adds one to the counter under `Meta`/`key` in one transaction; returns the new value.
fn increment(store: &mut dyn Store, key: &[u8]) -> Result<u64, StoreError> {
    let mut tx = store.transaction()?;
    let old = match tx.get(Table::Meta, key)? {
        Some(bytes) => u64::from_be_bytes(bytes.try_into().expect("8 bytes")),
        None => 0,
    };
    tx.put(Table::Meta, key, &(old + 1).to_be_bytes())?;
    tx.commit()?;
    Ok(old + 1)
}

fn read_counter(store: &mut dyn Store, key: &[u8]) -> Option<u64> {
    let mut tx = store.transaction().expect("transaction");
    tx.get(Table::Meta, key)
        .expect("get")
        .map(|bytes| u64::from_be_bytes(bytes.try_into().expect("8 bytes")))
}

/// Each increment reads, adds one and writes in one transaction: with serializable
/// transactions, every one of them sees a value no other saw, and none is lost.
fn two_threads_lose_no_increment<B: Backend>(test: &str) {
    let backend = B::new(test);
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let mut handle = backend.handle();
            thread::spawn(move || {
                (0..200)
                    .map(|_| increment(&mut handle, b"counter").expect("increment"))
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    let mut seen: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("thread"))
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, (1..=400).collect::<Vec<u64>>());
    assert_eq!(read_counter(&mut backend.handle(), b"counter"), Some(400));
}

/// One operation with five write points (put, delete, put, delete_prefix, commit).
fn five_writes(store: &mut dyn Store) -> Result<(), StoreError> {
    let mut tx = store.transaction()?;
    let generation = tx.get(Table::Meta, b"generation")?.unwrap_or_default();
    assert_eq!(
        generation, b"1",
        "the operation runs on the state it was written for"
    );
    tx.put(Table::Meta, b"generation", b"2")?;
    tx.delete(Table::Session, b"bob.1")?;
    tx.put(Table::Session, b"bob.2", b"new record")?;
    assert_eq!(tx.delete_prefix(Table::SkippedKey, b"bob.1/")?, 2);
    tx.commit()
}

fn a_failure_at_each_write_point_leaves_the_state_unchanged<B: Backend>(test: &str) {
    let base = [
        (Table::Meta, &b"generation"[..], &b"1"[..]),
        (Table::Session, b"bob.1", b"old record"),
        (Table::SkippedKey, b"bob.1/1", b"key 1"),
        (Table::SkippedKey, b"bob.1/2", b"key 2"),
        (Table::SkippedKey, b"bob.10/1", b"not bob.1's"),
    ];
    let after = entries(&[
        (Table::Meta, b"generation", b"2"),
        (Table::Session, b"bob.2", b"new record"),
        (Table::SkippedKey, b"bob.10/1", b"not bob.1's"),
    ]);
    for n in 1..=5 {
        let backend = B::new(&format!("{test}-{n}"));
        put_all(&mut backend.handle(), &base);
        let mut store = FailingStore::failing_at(backend.handle(), n);
        assert_eq!(
            five_writes(&mut store),
            Err(injected_failure(n)),
            "write point {n}"
        );
        assert_eq!(store.failed_at(), Some(n));
        assert_eq!(
            dump(&mut backend.handle()),
            entries(&base),
            "write point {n}"
        );
        assert_eq!(
            five_writes(&mut store),
            Ok(()),
            "retry after write point {n}"
        );
        assert_eq!(store.write_points(), n + 5);
        assert_eq!(
            dump(&mut backend.handle()),
            after,
            "retry after write point {n}"
        );
    }
    // Past the last write point, nothing fails.
    let backend = B::new(&format!("{test}-6"));
    put_all(&mut backend.handle(), &base);
    let mut store = FailingStore::failing_at(backend.handle(), 6);
    assert_eq!(five_writes(&mut store), Ok(()));
    assert_eq!((store.failed_at(), store.write_points()), (None, 5));
    assert_eq!(dump(&mut backend.handle()), after);
}

/// The wrapper counts across transactions, fails once, and can be armed again.
#[test]
fn failing_store_counts_across_transactions_and_fails_once() {
    let mut store = FailingStore::new(MemoryStore::new());
    put_all(
        &mut store,
        &[(Table::Meta, b"a", b"1"), (Table::Meta, b"b", b"2")],
    );
    assert_eq!((store.write_points(), store.failed_at()), (3, None));

    store.fail_after(2);
    let mut tx = store.transaction().expect("transaction");
    tx.delete(Table::Meta, b"a").expect("write point 4 passes");
    assert_eq!(tx.delete_prefix(Table::Meta, b""), Err(injected_failure(5)));
    // Reads are not write points, and the next write goes through.
    assert_eq!(tx.get(Table::Meta, b"b").expect("get"), Some(b"2".to_vec()));
    assert_eq!(tx.scan(Table::Meta, b"").expect("scan").len(), 1);
    tx.put(Table::Meta, b"c", b"3")
        .expect("write point 6 passes");
    tx.commit().expect("write point 7 passes");
    assert_eq!((store.write_points(), store.failed_at()), (7, Some(5)));
    assert_eq!(
        dump(store.inner_mut()),
        entries(&[(Table::Meta, b"b", b"2"), (Table::Meta, b"c", b"3")])
    );
}

/// A transaction open on this thread would make a second handle wait forever: it is busy.
#[test]
fn memory_second_transaction_on_the_same_thread_is_busy() {
    let mut first = MemoryStore::new();
    let mut second = first.clone();
    let mut tx = first.transaction().expect("transaction");
    tx.put(Table::Meta, b"k", b"v").expect("put");
    assert_eq!(
        second.transaction().err(),
        Some(StoreError::Busy { waited_ms: 0 })
    );
    tx.commit().expect("commit");
    let mut tx = second.transaction().expect("after the first ended");
    assert_eq!(tx.get(Table::Meta, b"k").expect("get"), Some(b"v".to_vec()));
}

/// A thread that panics inside a transaction poisons the lock; the other handles go on
/// with the last committed state, without a panic.
#[test]
fn memory_a_panic_inside_a_transaction_leaves_the_store_usable() {
    let mut store = MemoryStore::new();
    put_all(&mut store, &[(Table::Session, b"bob.1", b"record")]);
    let mut handle = store.clone();
    let panicked = thread::spawn(move || {
        let mut tx = handle.transaction().expect("transaction");
        tx.put(Table::Session, b"bob.1", b"half-done").expect("put");
        panic!("the app's code panics mid-transaction (expected by this test)");
    })
    .join();
    assert!(panicked.is_err());
    assert_eq!(
        dump(&mut store),
        entries(&[(Table::Session, b"bob.1", b"record")])
    );
    put_all(&mut store, &[(Table::Session, b"bob.2", b"more")]);
    assert_eq!(
        dump(&mut store),
        entries(&[
            (Table::Session, b"bob.1", b"record"),
            (Table::Session, b"bob.2", b"more")
        ])
    );
}

/// Debug output shows no key and no value.
#[test]
fn memory_debug_shows_no_data() {
    let mut store = MemoryStore::new();
    put_all(&mut store, &[(Table::Account, b"key", b"value")]);
    assert_eq!(format!("{store:?}"), "MemoryStore { .. }");
}

/// A `Box<dyn Store>` is a store (what a device without generics holds).
#[test]
fn a_boxed_store_is_a_store() {
    let mut boxed: Box<dyn Store> = Box::new(MemoryStore::new());
    put_all(&mut boxed, &[(Table::User, b"bob", b"devices")]);
    assert_eq!(
        dump(&mut boxed),
        entries(&[(Table::User, b"bob", b"devices")])
    );
}

#[cfg(feature = "sqlite")]
mod sqlite_only {
    //! What only the SQLite store has: files, a schema, locks between processes, crashes.

    use super::*;
    use processes::{child_lines, child_role, spawn_child, wait_for_all};
    use ratchetbox::{SqliteOptions, SqliteStore};
    use std::path::{Path, PathBuf};

    /// How many increments one process of the two-process test may be ahead of the other.
    const LEAD: u64 = 4;
    /// How many increments each process of the two-process test makes.
    const PER_PROCESS: u64 = 200;

    /// Reads the big-endian counter under `Meta`/`key` (0 if absent).
    fn counter_in(tx: &mut dyn ratchetbox::Transaction, key: &[u8]) -> u64 {
        tx.get(Table::Meta, key).expect("get").map_or(0, |bytes| {
            u64::from_be_bytes(bytes.try_into().expect("8 bytes"))
        })
    }

    /// One step of process `me` of the two-process test, in one transaction: unless it is
    /// [`LEAD`] increments ahead of the other (which has not finished), it adds one to the
    /// shared counter and to its own count, and returns the counter's new value.
    fn paced_increment(store: &mut SqliteStore, me: usize) -> Result<Option<u64>, StoreError> {
        let done = [b"done 0", b"done 1"];
        let mut tx = store.transaction()?;
        let mine = counter_in(&mut *tx, done[me]);
        let theirs = counter_in(&mut *tx, done[1 - me]);
        if mine >= theirs + LEAD && theirs < PER_PROCESS {
            return Ok(None);
        }
        let value = counter_in(&mut *tx, b"counter") + 1;
        tx.put(Table::Meta, b"counter", &value.to_be_bytes())?;
        tx.put(Table::Meta, done[me], &(mine + 1).to_be_bytes())?;
        tx.commit()?;
        Ok(Some(value))
    }

    /// Two processes increment one counter in one SQLite file, 200 times each, at the same
    /// time. Every increment is a read-modify-write transaction: each process prints the
    /// value it wrote, and together they must have written 1 to 400 exactly once each (no
    /// lost update, no value seen twice), with 400 in the file at the end.
    ///
    /// SQLite's lock is not a queue: a process that starts transactions back to back keeps
    /// the other waiting, and the two would run one after the other. So each process stays
    /// at most [`LEAD`] increments ahead of the other (it reads the other's count in the same
    /// transaction, and waits when it is ahead): their increments interleave, and still
    /// race for the same counter whenever both may go.
    ///
    /// The pattern for multi-process tests: the test binary runs itself again
    /// ([`spawn_child`]) with an environment variable naming the child's role; the same
    /// test, run in the child, sees it ([`child_role`]) and plays that role instead.
    #[test]
    fn sqlite_two_processes_increment_one_counter() {
        const TEST: &str = "sqlite_only::sqlite_two_processes_increment_one_counter";
        if let Some((role, db)) = child_role() {
            let me = match role.as_str() {
                "increment 0" => 0,
                "increment 1" => 1,
                other => panic!("unknown role {other}"),
            };
            let mut store = SqliteStore::open(&db).expect("open in the child");
            let mut done = 0;
            while done < PER_PROCESS {
                match paced_increment(&mut store, me).expect("increment") {
                    Some(value) => {
                        println!("wrote {value}");
                        done += 1;
                    }
                    None => thread::sleep(Duration::from_millis(1)),
                }
            }
            return;
        }

        let dir = TempDir::new("two-processes");
        let db = dir.path().join("store.sqlite");
        // Created here, so that the children only open it.
        drop(SqliteStore::open(&db).expect("create"));
        let outputs = wait_for_all(vec![
            spawn_child(TEST, "increment 0", &db),
            spawn_child(TEST, "increment 1", &db),
        ]);
        // owner[v - 1]: which process wrote the value v.
        let mut owner = vec![None; 2 * PER_PROCESS as usize];
        for (me, output) in outputs.iter().enumerate() {
            let wrote = child_lines(output, "wrote ");
            assert_eq!(wrote.len() as u64, PER_PROCESS, "child {me}");
            for value in wrote {
                let value: usize = value.parse().expect("a number");
                let slot = owner
                    .get_mut(value.wrapping_sub(1))
                    .expect("a value from 1 to 400");
                assert_eq!(*slot, None, "value {value} written twice");
                *slot = Some(me);
            }
        }
        // 400 values from 1 to 400, none twice: each was written exactly once.
        assert!(owner.iter().all(Option::is_some));
        let mut store = SqliteStore::open(&db).expect("reopen");
        assert_eq!(read_counter(&mut store, b"counter"), Some(2 * PER_PROCESS));

        // Interleaved: a process wrote at most 2 * LEAD values in a row.
        let longest_run = owner
            .chunk_by(|a, b| a == b)
            .map(<[Option<usize>]>::len)
            .max();
        assert!(
            longest_run <= Some(2 * LEAD as usize),
            "longest run {longest_run:?}"
        );
        let switches = owner.windows(2).filter(|w| w[0] != w[1]).count();
        eprintln!("two processes, 400 increments: the writer changed {switches} times");
    }

    /// A process that exits in the middle of a transaction (without unwinding, as in a
    /// crash), after writing more than SQLite's page cache holds, leaves the last committed
    /// state.
    #[test]
    fn sqlite_uncommitted_writes_do_not_survive_a_crash() {
        const TEST: &str = "sqlite_only::sqlite_uncommitted_writes_do_not_survive_a_crash";
        if let Some((role, db)) = child_role() {
            assert_eq!(role, "crash");
            let mut store = SqliteStore::open(&db).expect("open in the child");
            put_all(&mut store, &[(Table::Session, b"bob.1", b"committed")]);
            let mut tx = store.transaction().expect("transaction");
            tx.put(Table::Session, b"bob.1", b"uncommitted")
                .expect("put");
            for i in 0u32..2_000 {
                tx.put(Table::SkippedKey, &i.to_be_bytes(), &[0x5a; 4096])
                    .expect("put");
            }
            std::process::exit(3);
        }

        let dir = TempDir::new("crash");
        let db = dir.path().join("store.sqlite");
        let output = spawn_child(TEST, "crash", &db)
            .wait_with_output()
            .expect("wait");
        assert_eq!(output.status.code(), Some(3));
        let mut store = SqliteStore::open(&db).expect("reopen after the crash");
        assert_eq!(
            dump(&mut store),
            entries(&[(Table::Session, b"bob.1", b"committed")])
        );
    }

    #[test]
    fn sqlite_persists_across_reopen() {
        let dir = TempDir::new("reopen");
        let db = dir.path().join("store.sqlite");
        let mut store = SqliteStore::open(&db).expect("create");
        put_all(
            &mut store,
            &[
                (Table::Account, b"", b"account"),
                (Table::Session, b"bob.1", b"r"),
            ],
        );
        let mut tx = store.transaction().expect("transaction");
        tx.put(Table::Session, b"bob.2", b"never committed")
            .expect("put");
        drop(tx);
        drop(store);

        let mut store = SqliteStore::open(&db).expect("reopen");
        assert_eq!(
            dump(&mut store),
            entries(&[
                (Table::Account, b"", b"account"),
                (Table::Session, b"bob.1", b"r")
            ])
        );
    }

    #[test]
    fn sqlite_in_memory_store_works() {
        let mut store = SqliteStore::open_in_memory().expect("open");
        put_all(&mut store, &[(Table::Group, b"g", b"state")]);
        assert_eq!(dump(&mut store), entries(&[(Table::Group, b"g", b"state")]));
    }

    /// While one handle holds the write lock, another waits its busy timeout, then is
    /// busy; opening does not wait (it only reads).
    #[test]
    fn sqlite_busy_when_another_handle_holds_the_lock() {
        let dir = TempDir::new("busy");
        let db = dir.path().join("store.sqlite");
        let mut holder = SqliteStore::open(&db).expect("open");
        let mut tx = holder.transaction().expect("transaction");
        tx.put(Table::Session, b"bob.1", b"record").expect("put");

        let options = SqliteOptions::new().busy_timeout(Duration::from_millis(50));
        let mut waiter = SqliteStore::open_with(&db, options).expect("open while locked");
        assert_eq!(
            waiter.transaction().err(),
            Some(StoreError::Busy { waited_ms: 50 })
        );

        tx.commit().expect("commit");
        assert_eq!(
            dump(&mut waiter),
            entries(&[(Table::Session, b"bob.1", b"record")])
        );
    }

    #[test]
    fn sqlite_debug_shows_no_data() {
        let mut store = SqliteStore::open_in_memory().expect("open");
        put_all(&mut store, &[(Table::Account, b"key", b"value")]);
        assert_eq!(
            format!("{store:?}"),
            "SqliteStore { busy_timeout_ms: 10000, .. }"
        );
    }

    #[test]
    fn sqlite_options_clamp_the_busy_timeout() {
        assert_eq!(
            SqliteOptions::default().get_busy_timeout(),
            SqliteOptions::DEFAULT_BUSY_TIMEOUT
        );
        assert_eq!(SqliteOptions::DEFAULT_BUSY_TIMEOUT, Duration::from_secs(10));
        let huge = SqliteOptions::new().busy_timeout(Duration::from_secs(u64::MAX));
        assert_eq!(
            huge.get_busy_timeout(),
            Duration::from_millis(2_147_483_647)
        );
        let fine = SqliteOptions::new().busy_timeout(Duration::from_micros(1_999));
        assert_eq!(fine.get_busy_timeout(), Duration::from_millis(1));
    }

    #[test]
    fn sqlite_a_missing_directory_is_an_io_error() {
        let dir = TempDir::new("missing");
        let path = dir.path().join("no such dir").join("store.sqlite");
        let error = SqliteStore::open(&path).expect_err("cannot open");
        assert_eq!(
            error,
            StoreError::Io(format!(
                "opening the database: unable to open database file: {}",
                path.display()
            ))
        );
    }

    /// Writes `bytes` at `offset` in the file at `path`.
    fn patch(path: &Path, offset: usize, bytes: &[u8]) {
        let mut file = std::fs::read(path).expect("read");
        file[offset..offset + bytes.len()].copy_from_slice(bytes);
        std::fs::write(path, file).expect("write");
    }

    /// A store file, closed (its write-ahead log folded into it and removed), so that
    /// patching its bytes changes what the next open reads.
    fn closed_store(dir: &TempDir) -> PathBuf {
        let db = dir.path().join("store.sqlite");
        let mut store = SqliteStore::open(&db).expect("create");
        put_all(&mut store, &[(Table::Session, b"bob.1", b"record")]);
        drop(store);
        let mut wal = db.clone().into_os_string();
        wal.push("-wal");
        assert!(
            !Path::new(&wal).exists(),
            "closing folds the log into the file"
        );
        db
    }

    /// The SQLite file header: `user_version` at offset 60 and `application_id` at offset
    /// 68, both 4-byte big-endian (<https://www.sqlite.org/fileformat.html>, 1.3).
    const USER_VERSION_AT: usize = 60;
    const APPLICATION_ID_AT: usize = 68;

    /// Opening `db` fails with `expected`, and leaves the file as it was.
    fn assert_refused(db: &Path, expected: StoreError) {
        let before = std::fs::read(db).expect("read");
        assert_eq!(SqliteStore::open(db).err().as_ref(), Some(&expected));
        assert_eq!(
            std::fs::read(db).expect("read"),
            before,
            "the file is left as it was"
        );
    }

    #[test]
    fn sqlite_refuses_a_newer_schema() {
        let dir = TempDir::new("newer");
        let db = closed_store(&dir);
        patch(&db, USER_VERSION_AT, &2u32.to_be_bytes());
        assert_refused(
            &db,
            StoreError::Corrupt(
                "the store has schema version 2, newer than this version of ratchetbox reads \
                 (1): open it with a newer ratchetbox"
                    .to_string(),
            ),
        );
    }

    #[test]
    fn sqlite_refuses_an_unknown_schema_version() {
        let dir = TempDir::new("unknown");
        let db = closed_store(&dir);
        patch(&db, USER_VERSION_AT, &0u32.to_be_bytes());
        assert_refused(
            &db,
            StoreError::Corrupt("the store has an unknown schema version 0".to_string()),
        );
        patch(&db, USER_VERSION_AT, &(-1i32).to_be_bytes());
        assert_refused(
            &db,
            StoreError::Corrupt("the store has an unknown schema version -1".to_string()),
        );
    }

    #[test]
    fn sqlite_refuses_another_applications_file() {
        let dir = TempDir::new("foreign");
        let db = closed_store(&dir);
        patch(&db, APPLICATION_ID_AT, &0x1234_5678u32.to_be_bytes());
        assert_refused(
            &db,
            StoreError::Corrupt(
                "the file is an SQLite database of another application (application id \
                 0x12345678)"
                    .to_string(),
            ),
        );
        patch(&db, APPLICATION_ID_AT, &0u32.to_be_bytes());
        assert_refused(
            &db,
            StoreError::Corrupt(
                "the file is an SQLite database of another application (it has no ratchetbox \
                 mark)"
                    .to_string(),
            ),
        );
    }

    #[test]
    fn sqlite_refuses_a_file_that_is_not_a_database() {
        let dir = TempDir::new("not-a-database");
        let db = dir.path().join("store.sqlite");
        std::fs::write(
            &db,
            [b"these are not the bytes of an SQLite database\n".as_slice(); 100].concat(),
        )
        .expect("write");
        assert_refused(
            &db,
            StoreError::Corrupt("configuring the connection: file is not a database".to_string()),
        );
    }

    /// Damage inside the file (here: its table's first page overwritten) is a typed error
    /// when the damaged part is read, not a panic.
    #[test]
    fn sqlite_a_damaged_page_is_corrupt() {
        let dir = TempDir::new("damaged");
        let db = closed_store(&dir);
        let page_size = 4096;
        patch(&db, page_size, &[0x55; 4096]);
        let mut store = SqliteStore::open(&db).expect("the schema page is intact");
        let mut tx = store.transaction().expect("transaction");
        assert_eq!(
            tx.scan(Table::Session, b"").err(),
            Some(StoreError::Corrupt(
                "reading values: database disk image is malformed".to_string()
            ))
        );
        assert_eq!(
            tx.get(Table::Session, b"bob.1").err(),
            Some(StoreError::Corrupt(
                "reading a value: database disk image is malformed".to_string()
            ))
        );
    }
}
