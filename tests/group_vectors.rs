//! Group messages (docs/PROTOCOL.md section 16) against the vectors of the independent Python
//! implementation in tests/data/group_vectors.py.

use ratchetbox::group::{
    GroupDistribution, GroupError, GroupLimits, GroupMessage, GroupReceiver, GroupSender,
};
use serde_json::Value;

fn vectors() -> Value {
    serde_json::from_str(include_str!("data/group_vectors.json")).expect("valid JSON")
}

fn bytes(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().expect("hex string")).expect("valid hex")
}

#[test]
fn sender_produces_exactly_the_python_messages_and_a_receiver_reads_them() {
    let v = vectors();
    let senders = v["senders"].as_array().unwrap();
    assert_eq!(senders.len(), 2);
    let mut checked = 0;
    for s in senders {
        let state = bytes(&s["state"]);
        let mut sender = GroupSender::from_bytes(&state).unwrap();
        // The persisted form is canonical: it encodes back to the same bytes.
        assert_eq!(sender.to_bytes().as_slice(), state.as_slice());
        assert_eq!(
            sender.distribution().to_bytes().as_slice(),
            bytes(&s["distribution"]).as_slice()
        );
        assert_eq!(
            sender.key_id(),
            u32::try_from(v["key_id"].as_u64().unwrap()).unwrap()
        );
        assert_eq!(
            sender.distribution().signing_key().as_bytes().as_slice(),
            bytes(&v["signing_key"]).as_slice()
        );
        let distribution = GroupDistribution::from_bytes(&bytes(&s["distribution"])).unwrap();
        let mut receiver = GroupReceiver::new(*distribution.group_id());
        receiver
            .process_distribution(&distribution, &GroupLimits::default())
            .unwrap();
        for m in s["messages"].as_array().unwrap() {
            let plaintext = bytes(&m["plaintext"]);
            let wire = bytes(&m["wire"]);
            let sent = sender.encrypt(&plaintext).unwrap();
            assert_eq!(
                u64::from(sent.iteration()),
                m["iteration"].as_u64().unwrap()
            );
            assert_eq!(sent.to_bytes(), wire, "iteration {}", m["iteration"]);
            let received = GroupMessage::from_bytes(&wire).unwrap();
            assert_eq!(
                receiver
                    .decrypt(&received, &GroupLimits::default())
                    .unwrap()
                    .as_slice(),
                plaintext.as_slice()
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 4);
}

#[test]
fn negative_vectors_are_refused_with_their_errors() {
    let v = vectors();
    let negative = v["negative"].as_array().unwrap();
    assert_eq!(negative.len(), 2);
    for n in negative {
        let distribution = GroupDistribution::from_bytes(&bytes(&n["distribution"])).unwrap();
        let mut receiver = GroupReceiver::new(*distribution.group_id());
        receiver
            .process_distribution(&distribution, &GroupLimits::default())
            .unwrap();
        let message = GroupMessage::from_bytes(&bytes(&n["message"])).unwrap();
        let before = receiver.to_bytes();
        let got = receiver.decrypt(&message, &GroupLimits::default());
        match n["error"].as_str().unwrap() {
            "ForgedSignature" => assert_eq!(got, Err(GroupError::ForgedSignature)),
            "BeforeDistribution" => assert_eq!(
                got,
                Err(GroupError::BeforeDistribution {
                    key_id: distribution.key_id(),
                    iteration: 0,
                    first: 300
                })
            ),
            other => panic!("unknown expected error {other}"),
        }
        assert_eq!(receiver.to_bytes(), before);
    }
}
