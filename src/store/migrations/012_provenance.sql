-- A pushed build's provenance attestation: {"digest": the statement's sha256
-- digest as its layer holds it, "signed": whether a DSSE envelope signs it}.
-- NULL when none was pushed (provenance off, not pushed, or before this came).
ALTER TABLE builds ADD COLUMN provenance TEXT;
