//! The automatic backup schedule: a round over every store every `auto_backup_interval`, keeping the newest
//! `auto_backup_keep` automatic backups of each.

use super::*;

impl BackupManager {
    /// One round of automatic backups: every store, then prune each store's automatic backups to `keep`.
    pub async fn auto_backup_round(&self, keep: usize) {
        for store in self.gateway.store_names() {
            let (stamp, _) = now();
            let name = format!("{AUTO_PREFIX}{store}-{}", stamp.replace([':', '.'], "-"));
            match self.backup(&store, Some(name), |_| true).await {
                Ok(b) => tracing::info!(backup = %b.name, points = b.points, "automatic backup"),
                Err(e) => tracing::error!(store = %store, error = %e, "automatic backup failed"),
            }
            if let Err(e) = self.prune_auto(&store, keep) {
                tracing::error!(store = %store, error = %e, "pruning automatic backups failed");
            }
        }
    }

    /// Keeps the newest `keep` automatic backups of `store`, deleting older ones. Manual backups are never pruned.
    pub fn prune_auto(&self, store: &str, keep: usize) -> Result<usize> {
        let prefix = format!("{AUTO_PREFIX}{store}-");
        let autos: Vec<BackupInfo> =
            self.list(Some(store))?.into_iter().filter(|b| b.name.starts_with(&prefix)).collect();
        let mut removed = 0;
        for old in autos.iter().skip(keep) {
            self.delete(&old.name)?;
            removed += 1;
        }
        Ok(removed)
    }

    /// Runs [`Self::auto_backup_round`] every `interval` until `shutdown`.
    pub async fn run_schedule(
        self: Arc<Self>,
        interval: Duration,
        keep: usize,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        let mut tick = tokio::time::interval(interval);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => self.auto_backup_round(keep).await,
                _ = shutdown.cancelled() => return,
            }
        }
    }
}
