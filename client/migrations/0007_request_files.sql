-- A message request keeps what the message carried besides its text, so
-- accepting it moves a file, a quote and a disappearing message's erase
-- time into the history as they came (docs/protocol.md §9.11).
ALTER TABLE requests ADD COLUMN attachment   BLOB;    -- wire.Attachment, as in history
ALTER TABLE requests ADD COLUMN reply_to     BLOB;    -- quoted message id
ALTER TABLE requests ADD COLUMN reply_author TEXT;
ALTER TABLE requests ADD COLUMN expires_ms   INTEGER NOT NULL DEFAULT 0; -- 0: never
