//! Reading a build's provenance document and the key that signs them.

use super::{BuildError, BuildService};

impl BuildService {
    /// The provenance document pushed with build `id`'s image: its DSSE
    /// envelope when signed, else the statement; and whether it is signed.
    pub async fn provenance(&self, id: i64) -> Result<(Vec<u8>, bool), BuildError> {
        let build = self.get(id).await?;
        let record = build.provenance.ok_or(BuildError::NoProvenance(id))?;
        let document = self.engine.store.read_provenance(id).await?;
        let document = document.ok_or(BuildError::NoProvenance(id))?;
        Ok((document, record.signed))
    }

    /// The PEM public key provenance signatures verify with.
    pub fn provenance_public_key(&self) -> Result<String, BuildError> {
        let key = self.engine.settings.provenance.key.as_ref();
        key.map(|key| key.public_key_pem())
            .ok_or(BuildError::NoSigningKey)
    }
}
