//! Task events for containerd, packed without protobuf reflection.
//!
//! The containerd-shim crate's `RemotePublisher::publish` names each event through
//! `descriptor_dyn()`, and the first such call builds the reflection descriptors of the
//! events protos and everything they import (gogo, `descriptor.proto`): about 2 ms on the
//! Create path and 350 KiB of heap kept for the shim's lifetime, in every shim on the node.
//! Each event type here carries its topic and type name instead, and the envelope goes to
//! the same publisher queue through its `forward` entry point (same retries and ordering).

use std::time::SystemTime;

use containerd_shim::asynchronous::publisher::RemotePublisher;
use containerd_shim::protos::events::task::{
    TaskCreate, TaskDelete, TaskExit, TaskOOM, TaskPaused, TaskResumed, TaskStart,
};
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::Message;
use containerd_shim::protos::shim::event::Envelope;
use containerd_shim::protos::shim::events::ForwardRequest;
use containerd_shim::protos::shim_async::Events as _;
use containerd_shim::protos::topics;
use containerd_shim::TtrpcContext;

use crate::container::timestamp;

/// A task event containerd knows: its topic and its protobuf type name.
pub trait TaskEvent: Message {
    /// The topic containerd files it under (`/tasks/create`, …).
    const TOPIC: &'static str;
    /// The full protobuf name, which containerd's `typeurl` resolves.
    const TYPE_NAME: &'static str;
}

macro_rules! task_event {
    ($($ty:ident => $topic:ident),* $(,)?) => {$(
        impl TaskEvent for $ty {
            const TOPIC: &'static str = topics::$topic;
            const TYPE_NAME: &'static str = concat!("containerd.events.", stringify!($ty));
        }
    )*};
}

task_event! {
    TaskCreate => TASK_CREATE_EVENT_TOPIC,
    TaskStart => TASK_START_EVENT_TOPIC,
    TaskExit => TASK_EXIT_EVENT_TOPIC,
    TaskDelete => TASK_DELETE_EVENT_TOPIC,
    TaskOOM => TASK_OOM_EVENT_TOPIC,
    TaskPaused => TASK_PAUSED_EVENT_TOPIC,
    TaskResumed => TASK_RESUMED_EVENT_TOPIC,
}

/// Publishes task events of one namespace to containerd.
pub struct Events {
    publisher: RemotePublisher,
    namespace: String,
}

impl Events {
    /// Events for `namespace`, sent through `publisher`.
    pub fn new(publisher: RemotePublisher, namespace: &str) -> Self {
        Events {
            publisher,
            namespace: namespace.to_string(),
        }
    }

    /// Queues `event` for containerd. A failure is logged, not returned: the task operation
    /// that raised the event has happened either way.
    pub async fn publish<E: TaskEvent>(&self, event: E) {
        let request = match envelope(&self.namespace, &event) {
            Ok(envelope) => ForwardRequest {
                envelope: Some(envelope).into(),
                ..Default::default()
            },
            Err(e) => {
                tracing::warn!("publish {}: encoding: {e}", E::TOPIC);
                return;
            }
        };
        if let Err(e) = self
            .publisher
            .forward(&TtrpcContext::default(), request)
            .await
        {
            tracing::warn!("publish {}: {e}", E::TOPIC);
        }
    }
}

/// The envelope containerd's events service takes for `event`, stamped now.
fn envelope<E: TaskEvent>(
    namespace: &str,
    event: &E,
) -> Result<Envelope, containerd_shim::protos::protobuf::Error> {
    Ok(Envelope {
        timestamp: Some(timestamp(SystemTime::now())).into(),
        namespace: namespace.to_string(),
        topic: E::TOPIC.to_string(),
        event: Some(Any {
            type_url: E::TYPE_NAME.to_string(),
            value: event.write_to_bytes()?,
            ..Default::default()
        })
        .into(),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use containerd_shim::protos::protobuf::MessageFull;

    use super::*;

    fn names_match<E: TaskEvent + MessageFull>() {
        assert_eq!(E::TYPE_NAME, E::descriptor().full_name());
    }

    #[test]
    fn type_names_are_the_protobuf_names() {
        names_match::<TaskCreate>();
        names_match::<TaskStart>();
        names_match::<TaskExit>();
        names_match::<TaskDelete>();
        names_match::<TaskOOM>();
        names_match::<TaskPaused>();
        names_match::<TaskResumed>();
    }

    #[test]
    fn envelope_carries_topic_namespace_and_the_encoded_event() {
        let event = TaskStart {
            container_id: "c1".into(),
            pid: 42,
            ..Default::default()
        };
        let env = envelope("k8s.io", &event).unwrap();
        assert_eq!(env.topic, "/tasks/start");
        assert_eq!(env.namespace, "k8s.io");
        assert!(env.timestamp.seconds > 0);
        let any = env.event.unwrap();
        assert_eq!(any.type_url, "containerd.events.TaskStart");
        assert_eq!(TaskStart::parse_from_bytes(&any.value).unwrap(), event);
    }
}
