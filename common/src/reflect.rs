//! Reflector stores, the only cache both services read on a request path.
//!
//! One way to build them: a watcher with `any_semantic` lists, default
//! backoff, `managedFields` dropped (and whatever else the caller strips) to
//! save memory, written into a store; plus the future that must be polled to
//! keep the store filled, ending on `shutdown`.

use std::fmt::Debug;
use std::future::Future;
use std::hash::Hash;

use futures::{StreamExt, TryStreamExt};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

/// A store for `api` filtered by `config`, and the task that feeds it.
/// `strip` runs on every object before it is stored (after `managedFields`
/// are cleared). Watch errors are logged under `what`; the watcher retries
/// with backoff by itself.
pub fn store<K>(
    what: &'static str,
    api: Api<K>,
    config: watcher::Config,
    strip: impl FnMut(&mut K) + Send + 'static,
    shutdown: CancellationToken,
) -> (Store<K>, impl Future<Output = ()> + Send + 'static)
where
    K: Resource + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
{
    store_observed(what, api, config, strip, |_| {}, shutdown)
}

/// [`store`], and `observe` sees every watch event (after `strip`) just
/// before the store applies it. For an index kept beside the store, such as
/// pods by node: updated from the same events, it is never behind the store
/// once the store reports ready.
pub fn store_observed<K>(
    what: &'static str,
    api: Api<K>,
    config: watcher::Config,
    mut strip: impl FnMut(&mut K) + Send + 'static,
    mut observe: impl FnMut(&watcher::Event<K>) + Send + 'static,
    shutdown: CancellationToken,
) -> (Store<K>, impl Future<Output = ()> + Send + 'static)
where
    K: Resource + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
{
    let (store, writer) = reflector::store();
    let stream = watcher(api, config.any_semantic())
        .default_backoff()
        .modify(move |obj: &mut K| {
            obj.managed_fields_mut().clear();
            strip(obj);
        })
        .inspect_ok(move |event| observe(event))
        .reflect(writer)
        .applied_objects();
    let task = async move {
        let mut stream = std::pin::pin!(stream);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                item = stream.next() => match item {
                    Some(Ok(_)) => {}
                    Some(Err(e)) => tracing::warn!(watch = what, error = %e, "watch error"),
                    None => {
                        tracing::error!(watch = what, "watch stream ended");
                        return;
                    }
                },
            }
        }
    };
    (store, task)
}
