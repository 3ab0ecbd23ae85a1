//! Point operations beyond upsert / get / search, for agents' memory use: count, scroll, delete and metadata
//! updates by ids or by a filter.
//!
//! - A filter is resolved on the storage nodes: `Count` from each shard's in-memory index, `Scan` with the filter
//!   for scroll and for the ids a delete or update by filter applies to (read on one replica per shard, then
//!   written to every replica by id, so all replicas change the same points even if one of them held other
//!   metadata for a moment).
//! - Scroll is stateless: points come in id order across shards (each shard asked for `limit + 1` after the
//!   cursor, merged by id), and the cursor is the last id returned, hex-encoded. A cursor is valid forever, on any
//!   gateway, after any restart; points written after it are seen when their id sorts after it.
//! - Metadata updates run on the nodes (`UpdateMetadata`): each point is read and rewritten under its shard's
//!   write lock with a new version, so no concurrent write is lost between the read and the write, and vectors
//!   never travel.

use std::collections::BTreeMap;

use rvdb_core::error::excerpt;
use rvdb_core::filter::Filter;
use rvdb_core::types::{MAX_K, MAX_METADATA_BYTES, hex, unhex, validate_point_id};
use rvdb_proto::v1 as pb;
use serde_json::{Map, Value};
use tokio::task::JoinSet;

use crate::error::{GatewayError, Result};
use crate::gateway::{Gateway, IdsAck, PointOutput};
use crate::routing::StoreRoute;
use crate::text::TEXT_KEY;

/// Ids per request when a delete or update is sent to a shard's replicas.
const IDS_PER_REQUEST: usize = 10_000;

/// Which points an operation applies to.
#[derive(Debug, Clone, PartialEq)]
pub enum Selector {
    Ids(Vec<String>),
    /// Every point whose metadata matches (a filter as in search).
    Filter(Value),
}

impl Selector {
    /// From a request's `ids` and `filter`: exactly one of them.
    pub fn from_request(ids: Option<Vec<String>>, filter: Option<Value>) -> Result<Selector> {
        match (ids, filter.filter(|f| !f.is_null())) {
            (Some(ids), None) => Ok(Selector::Ids(ids)),
            (None, Some(filter)) => Ok(Selector::Filter(filter)),
            (Some(_), Some(_)) => Err(GatewayError::InvalidArgument("give either ids or filter, not both".into())),
            (None, None) => Err(GatewayError::InvalidArgument(
                "give ids (a list of point ids) or filter (the points whose metadata matches)".into(),
            )),
        }
    }
}

/// Metadata keys to set and to remove on each selected point (top-level keys; the rest of a point's metadata
/// is kept).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetadataUpdate {
    pub set: Map<String, Value>,
    pub unset: Vec<String>,
}

/// What a scroll asks for.
#[derive(Debug, Clone, Default)]
pub struct ScrollParams {
    pub filter: Option<Value>,
    pub limit: u32,
    /// `next_cursor` of the previous page; `None` = from the first point.
    pub cursor: Option<String>,
    pub with_vector: bool,
    pub with_metadata: bool,
}

/// One page of a scroll, in id order.
#[derive(Debug, Clone)]
pub struct ScrollPage {
    pub points: Vec<PointOutput>,
    /// Where the next page starts; `None` when this page is the last.
    pub next_cursor: Option<String>,
}

/// Points a scroll page may hold when the caller does not say.
pub fn default_scroll_limit() -> u32 {
    10
}

/// The cursor after `id`.
fn cursor_after(id: &str) -> String {
    hex(id.as_bytes())
}

/// The id a cursor resumes after.
fn cursor_id(cursor: &str) -> Result<String> {
    let refused = || {
        GatewayError::InvalidArgument(format!(
            "cursor {:?} is not a cursor this server returned: pass next_cursor from the previous page as it is",
            excerpt(cursor)
        ))
    };
    let id = unhex(cursor).and_then(|b| String::from_utf8(b).ok()).ok_or_else(refused)?;
    validate_point_id(&id).map_err(|_| refused())?;
    Ok(id)
}

/// A filter's JSON text for the nodes, checked here first so a bad one fails before any node is asked.
pub(crate) fn filter_text(filter: Option<&Value>) -> Result<String> {
    match filter {
        None | Some(Value::Null) => Ok(String::new()),
        Some(f) => {
            Filter::parse(f, "filter")?;
            Ok(f.to_string())
        }
    }
}

/// Refuses an empty or invalid id list, naming the bad entry (`ids[3]: …`).
pub(crate) fn check_ids(ids: &[String]) -> Result<()> {
    if ids.is_empty() {
        return Err(GatewayError::InvalidArgument("no ids given: send at least one".into()));
    }
    for (i, id) in ids.iter().enumerate() {
        validate_point_id(id).map_err(|e| GatewayError::InvalidArgument(format!("ids[{i}]: {e}")))?;
    }
    Ok(())
}

impl MetadataUpdate {
    /// Refuses an update that changes nothing, or one that touches the text of a document (`_text`: its vector
    /// was made from it, so it changes only by inserting the text again).
    fn check(&self) -> Result<()> {
        if self.set.is_empty() && self.unset.is_empty() {
            return Err(GatewayError::InvalidArgument(
                "nothing to update: give set (keys and their new values) and/or unset (keys to remove)".into(),
            ));
        }
        let touched = self.set.keys().map(|k| ("set", k)).chain(self.unset.iter().map(|k| ("unset", k)));
        for (field, key) in touched {
            if key == TEXT_KEY {
                return Err(GatewayError::InvalidArgument(format!(
                    "{field}: {TEXT_KEY} holds a document's text, from which its vector was made; insert the text \
                     again (insert_texts, same id) to change it"
                )));
            }
            if key.is_empty() {
                return Err(GatewayError::InvalidArgument(format!("{field}: a key is empty")));
            }
        }
        let bytes = Value::Object(self.set.clone()).to_string().len();
        if bytes > MAX_METADATA_BYTES {
            return Err(GatewayError::InvalidArgument(format!(
                "set: {bytes} bytes of JSON is more than a point's metadata may hold ({MAX_METADATA_BYTES})"
            )));
        }
        Ok(())
    }
}

impl Gateway {
    /// How many points of `store` match `filter` (all of them without one): a sum over the shards, each counted
    /// from its in-memory index on one replica.
    pub async fn count(&self, store: &str, filter: Option<&Value>) -> Result<u64> {
        let route = self.resolve(store).await?;
        Ok(self.shard_counts(&route, &filter_text(filter)?).await?.iter().sum())
    }

    /// How many points of each shard of `route` match `filter_json` ("" = all), in shard order, counted in parallel
    /// from each shard's in-memory index on one replica.
    pub(crate) async fn shard_counts(&self, route: &StoreRoute, filter_json: &str) -> Result<Vec<u64>> {
        let store = route.config.name.as_str();
        let mut tasks = JoinSet::new();
        for shard in 0..route.read_shards() {
            let req = pb::CountRequest {
                shard: Some(pb::ShardId { store: store.to_string(), shard }),
                filter_json: filter_json.to_string(),
                layout_shards: route.layout_shards(),
            };
            let replicas = self.read_replicas(route, shard)?;
            tasks.spawn(rvdb_proto::rpc::in_current_request(async move {
                let count = crate::gateway::first_replica(replicas, move |c| {
                    let req = req.clone();
                    async move { c.count(req).await.map(|r| r.count) }
                })
                .await;
                (shard, count)
            }));
        }
        let mut counts = vec![0; route.read_shards() as usize];
        while let Some(joined) = tasks.join_next().await {
            let (shard, count) = joined.map_err(|e| GatewayError::Backend(format!("count task failed: {e}")))?;
            counts[shard as usize] = count?;
        }
        Ok(counts)
    }

    /// One page of the points of `store` that match the filter, in id order (see the module docs).
    pub async fn scroll(&self, store: &str, params: &ScrollParams) -> Result<ScrollPage> {
        let route = self.resolve(store).await?;
        if params.limit == 0 || params.limit > MAX_K {
            return Err(GatewayError::InvalidArgument(format!("limit must be between 1 and {MAX_K}")));
        }
        let after = params.cursor.as_deref().map(cursor_id).transpose()?.unwrap_or_default();
        let filter_json = filter_text(params.filter.as_ref())?;
        let limit = params.limit as usize;
        let mut tasks = JoinSet::new();
        for shard in 0..route.read_shards() {
            let req = pb::ScanRequest {
                shard: Some(pb::ShardId { store: store.to_string(), shard }),
                start_after: after.clone(),
                chunk_size: (limit + 1).min(1000) as u32,
                with_vector: params.with_vector,
                with_metadata: params.with_metadata,
                filter_json: filter_json.clone(),
                limit: (limit + 1) as u32,
                layout_shards: route.layout_shards(),
                ..Default::default()
            };
            let replicas = self.read_replicas(&route, shard)?;
            tasks.spawn(rvdb_proto::rpc::in_current_request(crate::gateway::collect_scan(replicas, req)));
        }
        let mut all = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            all.extend(joined.map_err(|e| GatewayError::Backend(format!("scroll task failed: {e}")))??);
        }
        all.sort_by(|a, b| a.id.cmp(&b.id));
        let more = all.len() > limit;
        all.truncate(limit);
        let next_cursor = if more { all.last().map(|p| cursor_after(&p.id)) } else { None };
        let points = all
            .into_iter()
            .map(|p| PointOutput {
                metadata: if params.with_metadata {
                    serde_json::from_str(&p.metadata_json).unwrap_or(Value::Null)
                } else {
                    Value::Null
                },
                vector: params.with_vector.then_some(p.vector),
                id: p.id,
                version: p.version,
            })
            .collect();
        Ok(ScrollPage { points, next_cursor })
    }

    /// Deletes the selected points; returns how many existed. `progress(done, total)` is told after each request
    /// of ids (a filter may select millions); returning false stops (cancelled) after the ids sent so far.
    pub async fn delete_points(
        &self,
        store: &str,
        selector: Selector,
        mut progress: impl FnMut(u64, u64) -> bool,
    ) -> Result<u64> {
        match selector {
            Selector::Ids(ids) => self.delete(store, ids).await,
            Selector::Filter(filter) => {
                let route = self.resolve(store).await?;
                let by_shard = self.matching_ids(&route, &filter).await?;
                let total: u64 = by_shard.values().map(|ids| ids.len() as u64).sum();
                let (mut deleted, mut done) = (0, 0);
                for ids in by_shard.into_values() {
                    for chunk in ids.chunks(IDS_PER_REQUEST) {
                        deleted += self.delete_ids(&route, chunk.to_vec()).await?;
                        done += chunk.len() as u64;
                        if !progress(done, total) {
                            return Err(GatewayError::Cancelled);
                        }
                    }
                }
                Ok(deleted)
            }
        }
    }

    /// Sets and removes metadata keys on the selected points (vectors kept); returns how many points were
    /// updated (ids that hold no point are not counted). `progress` as in [`Gateway::delete_points`].
    pub async fn update_metadata(
        &self,
        store: &str,
        selector: Selector,
        update: &MetadataUpdate,
        mut progress: impl FnMut(u64, u64) -> bool,
    ) -> Result<u64> {
        let route = self.resolve(store).await?;
        update.check()?;
        let by_shard: BTreeMap<u32, Vec<String>> = match selector {
            Selector::Ids(ids) => {
                check_ids(&ids)?;
                let mut by_shard: BTreeMap<u32, Vec<String>> = BTreeMap::new();
                for id in ids {
                    by_shard.entry(route.shard_of(&id)).or_default().push(id);
                }
                by_shard
            }
            Selector::Filter(filter) => self.matching_ids(&route, &filter).await?,
        };
        let set_json = Value::Object(update.set.clone()).to_string();
        let total: u64 = by_shard.values().map(|ids| ids.len() as u64).sum();
        let (mut updated, mut done) = (0, 0);
        for ids in by_shard.into_values() {
            for chunk in ids.chunks(IDS_PER_REQUEST) {
                let (store, set_json, unset) = (store.to_string(), set_json.clone(), update.unset.clone());
                updated += self
                    .write_ids(&route, chunk.to_vec(), move |c, shard, ids, version, placement_epoch| {
                        let req = pb::UpdateMetadataRequest {
                            shard: Some(pb::ShardId { store: store.clone(), shard }),
                            ids,
                            set_json: set_json.clone(),
                            unset: unset.clone(),
                            version,
                            sync: false,
                            placement_epoch,
                        };
                        async move {
                            c.update_metadata(req).await.map(|r| IdsAck {
                                count: r.updated.into(),
                                stale_ids: r.stale_ids,
                                shard_max_version: r.shard_max_version,
                            })
                        }
                    })
                    .await?;
                done += chunk.len() as u64;
                if !progress(done, total) {
                    return Err(GatewayError::Cancelled);
                }
            }
        }
        Ok(updated)
    }

    /// The ids of the points that match `filter`, by shard, each shard read on one replica.
    async fn matching_ids(&self, route: &StoreRoute, filter: &Value) -> Result<BTreeMap<u32, Vec<String>>> {
        let filter_json = filter_text(Some(filter))?;
        let store = route.config.name.as_str();
        let mut by_shard = BTreeMap::new();
        for shard in 0..route.read_shards() {
            let req = pb::ScanRequest {
                shard: Some(pb::ShardId { store: store.to_string(), shard }),
                start_after: String::new(),
                chunk_size: 10_000,
                with_vector: false,
                with_metadata: false,
                filter_json: filter_json.clone(),
                layout_shards: route.layout_shards(),
                ..Default::default()
            };
            let points = crate::gateway::collect_scan(self.read_replicas(route, shard)?, req).await?;
            let ids: Vec<String> = points.into_iter().map(|p| p.id).collect();
            if !ids.is_empty() {
                by_shard.insert(shard, ids);
            }
        }
        Ok(by_shard)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_what_they_are_not() {
        for id in ["a", "doc-1", "日本", "with space", &"x".repeat(512)] {
            assert_eq!(cursor_id(&cursor_after(id)).ok().as_deref(), Some(id));
        }
        for bad in ["", "zz", "abc", "00", &hex(&[0xff, 0xfe])] {
            let e = cursor_id(bad).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains("not a cursor this server returned"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn a_selector_is_ids_or_a_filter() {
        let ids = Some(vec!["a".to_string()]);
        let filter = Some(serde_json::json!({"must": []}));
        assert_eq!(Selector::from_request(ids.clone(), None).ok(), Some(Selector::Ids(vec!["a".into()])));
        assert!(matches!(Selector::from_request(None, filter.clone()), Ok(Selector::Filter(_))));
        assert!(Selector::from_request(ids, filter).is_err());
        assert!(Selector::from_request(None, None).is_err());
        assert!(Selector::from_request(None, Some(Value::Null)).is_err());
    }

    #[test]
    fn updates_must_change_something_and_leave_the_text_alone() {
        let none = MetadataUpdate::default();
        assert!(none.check().unwrap_err().to_string().contains("nothing to update"));
        let mut set = Map::new();
        set.insert(TEXT_KEY.into(), Value::String("other words".into()));
        let text = MetadataUpdate { set, unset: vec![] };
        assert!(text.check().unwrap_err().to_string().starts_with("set: _text"));
        let unset = MetadataUpdate { set: Map::new(), unset: vec![TEXT_KEY.into()] };
        assert!(unset.check().unwrap_err().to_string().starts_with("unset: _text"));
        let mut big = Map::new();
        big.insert("blob".into(), Value::String("x".repeat(MAX_METADATA_BYTES)));
        assert!(MetadataUpdate { set: big, unset: vec![] }.check().unwrap_err().to_string().contains("more than"));
        let mut ok = Map::new();
        ok.insert("topic".into(), Value::String("deploys".into()));
        assert!(MetadataUpdate { set: ok, unset: vec!["draft".into()] }.check().is_ok());
    }
}
