-- Linked devices, sync copies and recovery (issue 5).
--
-- account.account_key now holds either the account's private key (on the
-- primary, the device that signs device lists) or only its public key (on
-- a linked device); the encoding's tag tells which (docs/protocol.md §2.1).
--
-- The account's own device list lives in peers like any other account's,
-- under the own username, so every list this device accepts for itself
-- goes through the same verification and rollback checks.

-- What this device knows about the account's devices beyond the signed
-- list: the names people gave them, when this device learned of them and
-- when it last received something from them.
CREATE TABLE own_devices (
	device_id    INTEGER PRIMARY KEY,
	name         TEXT    NOT NULL,
	added_ms     INTEGER NOT NULL,
	last_seen_ms INTEGER NOT NULL  -- 0: nothing received from it yet
);

-- An outbox row that is the sync copy of another message names it, so the
-- copy is dropped if that message is refused for good.
ALTER TABLE outbox ADD COLUMN sync_of BLOB;

-- A sync copy (a message this account sent from another device) is stored
-- as an outgoing history row; unshown = 1 until it was handed to the
-- application, so a crash in between hands it over again.
ALTER TABLE history ADD COLUMN unshown INTEGER NOT NULL DEFAULT 0;
CREATE INDEX history_unshown ON history (unshown) WHERE unshown = 1;
