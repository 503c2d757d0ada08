DROP INDEX endpoints_owner;
ALTER TABLE endpoints DROP COLUMN lease_expires_at;
ALTER TABLE endpoints DROP COLUMN owner_node;
DROP TABLE nodes;
