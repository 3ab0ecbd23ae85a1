//! Every operation the gateway offers, once: what it needs (read or write access) and the name each surface gives
//! it (MCP tool, REST route, gateway gRPC method, CLI command). Authorisation on every surface asks this table
//! ([`Operation::access`] through [`by_mcp_tool`], [`by_rest_route`], [`by_grpc_method`]), and the MCP tools'
//! `readOnlyHint` and the OpenAPI document's 403s are derived from it, so a read-only key is treated alike
//! everywhere and the hints cannot drift from what is enforced.

use axum::http::Method;

/// What an operation needs of the caller's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reads stored data or files only: a read-only key may call it.
    Read,
    /// Changes stored data, the catalog or files: needs a read-write key.
    Write,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    CreateStore,
    ListStores,
    DescribeStore,
    DropStore,
    SyncStore,
    RebuildIndex,
    InsertVector,
    InsertVectors,
    GetVector,
    GetVectors,
    DeleteVector,
    DeleteVectors,
    Search,
    Backup,
    ListBackups,
    DescribeBackup,
    DeleteBackup,
    Restore,
    Export,
    Import,
    Embed,
    InsertTexts,
    SearchText,
    UpdateMetadata,
    Count,
    Scroll,
    MapStore,
    ClusterStatus,
}

/// One operation and its names on each surface (`None`: that surface does not offer it).
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub op: Operation,
    pub access: Access,
    pub mcp_tool: Option<&'static str>,
    /// Method and route template (`{name}` segments match any one segment).
    pub rest: &'static [(Method, &'static str)],
    pub grpc: Option<&'static str>,
    pub cli: Option<&'static str>,
}

use Access::{Read, Write};
use Operation::*;

const fn spec(
    op: Operation,
    access: Access,
    mcp_tool: Option<&'static str>,
    rest: &'static [(Method, &'static str)],
    grpc: Option<&'static str>,
    cli: Option<&'static str>,
) -> Spec {
    Spec { op, access, mcp_tool, rest, grpc, cli }
}

/// The table.
pub const OPERATIONS: &[Spec] = &[
    spec(
        CreateStore,
        Write,
        Some("create_store"),
        &[(Method::POST, "/v1/stores")],
        Some("/rvdb.v1.StoreService/CreateStore"),
        Some("create-store"),
    ),
    spec(
        ListStores,
        Read,
        Some("list_stores"),
        &[(Method::GET, "/v1/stores")],
        Some("/rvdb.v1.StoreService/ListStores"),
        Some("list-stores"),
    ),
    spec(
        DescribeStore,
        Read,
        Some("describe_store"),
        &[(Method::GET, "/v1/stores/{store}")],
        Some("/rvdb.v1.StoreService/DescribeStore"),
        Some("stats"),
    ),
    spec(
        DropStore,
        Write,
        Some("delete_store"),
        &[(Method::DELETE, "/v1/stores/{store}")],
        Some("/rvdb.v1.StoreService/DropStore"),
        Some("drop-store"),
    ),
    spec(
        SyncStore,
        Write,
        Some("sync_store"),
        &[(Method::POST, "/v1/stores/{store}/sync")],
        Some("/rvdb.v1.StoreService/SyncStore"),
        Some("sync"),
    ),
    spec(RebuildIndex, Write, None, &[(Method::POST, "/v1/stores/{store}/rebuild-index")], None, Some("rebuild-index")),
    spec(InsertVector, Write, Some("insert_vector"), &[], None, Some("insert")),
    spec(
        InsertVectors,
        Write,
        Some("insert_vectors"),
        &[(Method::PUT, "/v1/stores/{store}/points")],
        Some("/rvdb.v1.StoreService/UpsertPoints"),
        Some("import"),
    ),
    spec(GetVector, Read, Some("get_vector"), &[(Method::GET, "/v1/stores/{store}/points/{id}")], None, None),
    spec(
        GetVectors,
        Read,
        None,
        &[(Method::POST, "/v1/stores/{store}/points/get")],
        Some("/rvdb.v1.StoreService/GetPoints"),
        Some("get"),
    ),
    spec(DeleteVector, Write, Some("delete_vector"), &[(Method::DELETE, "/v1/stores/{store}/points/{id}")], None, None),
    spec(
        DeleteVectors,
        Write,
        Some("delete_points"),
        &[(Method::POST, "/v1/stores/{store}/points/delete")],
        Some("/rvdb.v1.StoreService/DeletePoints"),
        Some("delete"),
    ),
    spec(
        Search,
        Read,
        Some("search_vectors"),
        &[(Method::POST, "/v1/stores/{store}/search")],
        Some("/rvdb.v1.StoreService/SearchPoints"),
        Some("search"),
    ),
    spec(
        Backup,
        Write,
        Some("backup_store"),
        &[(Method::POST, "/v1/stores/{store}/backups")],
        Some("/rvdb.v1.BackupService/Backup"),
        Some("backup"),
    ),
    spec(
        ListBackups,
        Read,
        Some("list_backups"),
        &[(Method::GET, "/v1/backups")],
        Some("/rvdb.v1.BackupService/ListBackups"),
        Some("list-backups"),
    ),
    spec(DescribeBackup, Read, None, &[(Method::GET, "/v1/backups/{backup}")], None, None),
    spec(DeleteBackup, Write, None, &[(Method::DELETE, "/v1/backups/{backup}")], None, Some("delete-backup")),
    spec(
        Restore,
        Write,
        Some("restore_store"),
        &[(Method::POST, "/v1/backups/{backup}/restore")],
        Some("/rvdb.v1.BackupService/Restore"),
        Some("restore"),
    ),
    spec(
        Export,
        Write,
        Some("export_store"),
        &[(Method::POST, "/v1/stores/{store}/export")],
        Some("/rvdb.v1.BackupService/Export"),
        Some("export-store"),
    ),
    spec(
        Import,
        Write,
        Some("import_store"),
        &[(Method::POST, "/v1/stores/{store}/import")],
        Some("/rvdb.v1.BackupService/Import"),
        Some("import-store"),
    ),
    spec(Embed, Read, None, &[(Method::POST, "/v1/embeddings")], None, None),
    spec(
        InsertTexts,
        Write,
        Some("insert_texts"),
        &[(Method::PUT, "/v1/stores/{store}/texts")],
        Some("/rvdb.v1.StoreService/InsertTexts"),
        Some("insert-texts"),
    ),
    spec(
        SearchText,
        Read,
        Some("search_text"),
        &[(Method::POST, "/v1/stores/{store}/texts/search")],
        Some("/rvdb.v1.StoreService/SearchText"),
        Some("search-text"),
    ),
    spec(
        UpdateMetadata,
        Write,
        Some("update_metadata"),
        &[(Method::POST, "/v1/stores/{store}/points/metadata")],
        Some("/rvdb.v1.StoreService/UpdateMetadata"),
        Some("update-metadata"),
    ),
    spec(
        Count,
        Read,
        Some("count"),
        &[(Method::POST, "/v1/stores/{store}/points/count")],
        Some("/rvdb.v1.StoreService/CountPoints"),
        Some("count"),
    ),
    spec(
        Scroll,
        Read,
        Some("scroll"),
        &[(Method::POST, "/v1/stores/{store}/points/scroll")],
        Some("/rvdb.v1.StoreService/ScrollPoints"),
        Some("scroll"),
    ),
    spec(MapStore, Read, None, &[(Method::POST, "/v1/stores/{store}/map")], None, None),
    spec(ClusterStatus, Read, None, &[(Method::GET, "/v1/cluster")], None, Some("cluster-status")),
];

impl Operation {
    pub fn spec(self) -> &'static Spec {
        OPERATIONS.iter().find(|s| s.op == self).unwrap_or(&OPERATIONS[0])
    }

    pub fn access(self) -> Access {
        self.spec().access
    }
}

pub fn by_mcp_tool(name: &str) -> Option<&'static Spec> {
    OPERATIONS.iter().find(|s| s.mcp_tool == Some(name))
}

pub fn by_grpc_method(path: &str) -> Option<&'static Spec> {
    OPERATIONS.iter().find(|s| s.grpc == Some(path))
}

/// Whether `path` matches `template` (`{…}` segments match any one non-empty segment).
fn route_matches(template: &str, path: &str) -> bool {
    let (mut t, mut p) = (template.split('/'), path.split('/'));
    loop {
        match (t.next(), p.next()) {
            (None, None) => return true,
            (Some(ts), Some(ps)) if ts.starts_with('{') && ts.ends_with('}') => {
                if ps.is_empty() {
                    return false;
                }
            }
            (Some(ts), Some(ps)) if ts == ps => {}
            _ => return false,
        }
    }
}

/// The operation a REST request is (`HEAD` as its `GET`); `None` for a route the API does not have.
pub fn by_rest_route(method: &Method, path: &str) -> Option<&'static Spec> {
    let method = if *method == Method::HEAD { &Method::GET } else { method };
    OPERATIONS.iter().find(|s| s.rest.iter().any(|(m, t)| m == method && route_matches(t, path)))
}

/// gRPC methods of the gateway's own services that a read-only key may call (for its server layer).
pub fn grpc_reads(path: &str) -> bool {
    by_grpc_method(path).is_some_and(|s| s.access == Read) || path.starts_with("/grpc.health.v1.Health/")
}

/// REST requests that only read, by the operation table ([`crate::ops`]). A route the API does not have needs no
/// write access either: it runs nothing and gets its 404 (or 405).
pub fn rest_reads(method: &Method, path: &str) -> bool {
    by_rest_route(method, path).is_none_or(|s| s.access == Access::Read)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_is_in_the_table_once_and_routes_resolve() {
        for (i, s) in OPERATIONS.iter().enumerate() {
            assert_eq!(s.op.spec().op, s.op);
            assert!(OPERATIONS[..i].iter().all(|o| o.op != s.op), "{:?} twice", s.op);
            for (m, t) in s.rest {
                let concrete = t.replace("{store}", "docs").replace("{id}", "p-1").replace("{backup}", "b1");
                assert_eq!(by_rest_route(m, &concrete).map(|o| o.op), Some(s.op), "{m} {concrete}");
            }
        }
        assert_eq!(by_rest_route(&Method::HEAD, "/v1/stores").map(|s| s.op), Some(ListStores));
        assert!(by_rest_route(&Method::GET, "/v1/stores/a/b/c/d").is_none());
        assert!(by_rest_route(&Method::GET, "/v1/stores//points/x").is_none(), "empty segments match nothing");
        assert!(grpc_reads("/rvdb.v1.BackupService/ListBackups") && !grpc_reads("/rvdb.v1.BackupService/Restore"));
    }

    #[test]
    fn the_tool_catalogue_and_the_table_agree() {
        let tools = crate::tools::catalogue();
        for t in &tools {
            let spec = by_mcp_tool(&t.name).unwrap_or_else(|| panic!("tool {} has no operation", t.name));
            let read_only = t.annotations.as_ref().and_then(|a| a.read_only_hint).unwrap_or(false);
            assert_eq!(read_only, spec.access == Read, "{}", t.name);
        }
        let with_tool = OPERATIONS.iter().filter(|s| s.mcp_tool.is_some()).count();
        assert_eq!(with_tool, tools.len(), "every operation with a tool name is in the catalogue");
    }
}
