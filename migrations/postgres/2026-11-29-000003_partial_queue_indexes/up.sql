-- Only the deliveries a query looks for by state are indexed, and only while
-- they are in that state: a pending delivery is in its endpoint's queue
-- index until it is done, and then leaves it (no entry is moved to a new
-- place when its status changes, and the index stays as small as the
-- backlog). Dead letters have their own index, in id order.
-- Queries must spell the state as a literal (status = 'pending') for the
-- planner to use these indexes; see store::deliveries.
DROP INDEX deliveries_queue;
CREATE INDEX deliveries_pending ON deliveries (endpoint_id, id) WHERE status = 'pending';
CREATE INDEX deliveries_dead ON deliveries (id) WHERE status = 'dead';
