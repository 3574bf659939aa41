-- Groups (issue 6, docs/protocol.md §11). The server knows nothing of
-- them: a group lives in its members' signed states, held here.

-- One row per group this device knows. name and epoch repeat the head
-- state's for listing; member = 0 once this account is no longer in it
-- (removed or left): the group stays listed as inactive.
CREATE TABLE groups (
	group_id   BLOB    PRIMARY KEY,
	name       TEXT    NOT NULL,
	epoch      INTEGER NOT NULL,
	member     INTEGER NOT NULL,
	updated_ms INTEGER NOT NULL
);
CREATE INDEX groups_name ON groups (name);

-- The chain of signed states held, one per epoch, the head being the
-- highest. Older epochs are kept (a bounded number) to settle concurrent
-- changes: a competing state at an epoch held replaces it and what
-- followed it if it wins (§11.4).
CREATE TABLE group_states (
	group_id BLOB    NOT NULL REFERENCES groups (group_id) ON DELETE CASCADE,
	epoch    INTEGER NOT NULL,
	hash     BLOB    NOT NULL,  -- SHA-256 of the GroupState encoding
	signed   BLOB    NOT NULL,  -- wire.SignedGroupState encoding
	PRIMARY KEY (group_id, epoch)
);

-- States that do not follow the head yet (one in between is still on its
-- way); applied as soon as they do. Bounded per group.
CREATE TABLE group_pending (
	group_id    BLOB    NOT NULL REFERENCES groups (group_id) ON DELETE CASCADE,
	hash        BLOB    NOT NULL,
	epoch       INTEGER NOT NULL,
	signed      BLOB    NOT NULL,
	received_ms INTEGER NOT NULL,
	PRIMARY KEY (group_id, hash)
);

-- A group message goes out as one outbox row per member (each with its
-- own envelope id) plus one for the own other devices; group_of names the
-- message's id within the group, the id of its history row.
ALTER TABLE outbox ADD COLUMN group_of BLOB;
CREATE INDEX outbox_group_of ON outbox (group_of) WHERE group_of IS NOT NULL;

-- Once the last row of a group message leaves the outbox (stored by the
-- server, or refused for good for that member), the message counts as
-- sent: the outbox's own bookkeeping only knows envelope ids.
CREATE TRIGGER outbox_group_done AFTER DELETE ON outbox
WHEN OLD.group_of IS NOT NULL
	AND NOT EXISTS (SELECT 1 FROM outbox WHERE group_of = OLD.group_of)
BEGIN
	UPDATE history SET state = 1 WHERE outgoing = 1 AND message_id = OLD.group_of AND state = 0;
END;
