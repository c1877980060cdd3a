-- timepool control-plane schema, version 8: a user deletes their login
-- (issue 14; web/README.md, "Your data and deleting your login"). Same
-- portable rules as 0001_initial.sql.

-- When the user asked for their login to be deleted; it is deleted 7 days
-- later unless they log in before (which sets it back to NULL).
ALTER TABLE users ADD COLUMN deletion_requested_at BIGINT;
