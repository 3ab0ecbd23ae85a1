//! The gateway's gRPC surface for backups (`rvdb.v1.BackupService`): the same [`BackupManager`] the MCP tools
//! use, converted to protobuf. Errors map to status codes once, here.

use std::sync::Arc;

use rvdb_proto::v1 as pb;
use rvdb_proto::v1::backup_service_server::{BackupService, BackupServiceServer};
use tonic::{Code, Request, Response, Status};

use crate::GatewayError;
use crate::backup::{BackupInfo, BackupManager};

impl From<GatewayError> for Status {
    fn from(e: GatewayError) -> Status {
        let code = match &e {
            GatewayError::Invalid(_) | GatewayError::InvalidArgument(_) => Code::InvalidArgument,
            GatewayError::NotFound(_) => Code::NotFound,
            GatewayError::AlreadyExists(_) => Code::AlreadyExists,
            GatewayError::LimitReached(_) => Code::ResourceExhausted,
            GatewayError::Unavailable(_) => Code::Unavailable,
            GatewayError::Backend(_) => Code::Internal,
            GatewayError::Cancelled => Code::Cancelled,
        };
        Status::new(code, e.to_string())
    }
}

#[derive(Debug, Clone)]
pub struct BackupGrpc {
    backups: Arc<BackupManager>,
}

impl BackupGrpc {
    pub fn new(backups: Arc<BackupManager>) -> Self {
        Self { backups }
    }

    pub fn into_server(self) -> BackupServiceServer<Self> {
        BackupServiceServer::new(self)
    }
}

fn info_to_pb(b: BackupInfo) -> pb::BackupInfo {
    pb::BackupInfo {
        name: b.name,
        store: b.store,
        points: b.points,
        bytes: b.bytes,
        created_at: b.created_at,
        rvdb_version: b.rvdb_version,
        path: b.path,
    }
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

#[tonic::async_trait]
impl BackupService for BackupGrpc {
    async fn backup(&self, req: Request<pb::BackupRequest>) -> Result<Response<pb::BackupInfo>, Status> {
        let r = req.into_inner();
        let info = self.backups.backup(&r.store, non_empty(r.name), |_| true).await?;
        Ok(Response::new(info_to_pb(info)))
    }

    async fn list_backups(
        &self,
        req: Request<pb::ListBackupsRequest>,
    ) -> Result<Response<pb::ListBackupsResponse>, Status> {
        let store = non_empty(req.into_inner().store);
        let backups = self.backups.list(store.as_deref())?.into_iter().map(info_to_pb).collect();
        Ok(Response::new(pb::ListBackupsResponse { backups }))
    }

    async fn restore(&self, req: Request<pb::RestoreRequest>) -> Result<Response<pb::RestoreResponse>, Status> {
        let r = req.into_inner();
        let shards = (r.shards > 0).then_some(r.shards);
        let out = self.backups.restore(&r.backup, &r.store, shards, |_, _| true).await?;
        Ok(Response::new(pb::RestoreResponse {
            source: out.backup,
            store: out.store,
            points: out.points,
            shards: out.shards,
        }))
    }

    async fn export(&self, req: Request<pb::ExportRequest>) -> Result<Response<pb::ExportResponse>, Status> {
        let r = req.into_inner();
        let out = self.backups.export(&r.store, non_empty(r.file), |_| true).await?;
        Ok(Response::new(pb::ExportResponse {
            store: out.store,
            file: out.file,
            points: out.points,
            bytes: out.bytes,
            path: out.path,
        }))
    }

    async fn import(&self, req: Request<pb::ImportRequest>) -> Result<Response<pb::RestoreResponse>, Status> {
        let r = req.into_inner();
        let out = self.backups.import(&r.file, &r.store, |_| true).await?;
        Ok(Response::new(pb::RestoreResponse {
            source: out.backup,
            store: out.store,
            points: out.points,
            shards: out.shards,
        }))
    }
}
