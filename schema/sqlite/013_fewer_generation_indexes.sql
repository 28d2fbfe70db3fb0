-- 013_fewer_generation_indexes: every create writes one entry in each index
-- of generations, inside the write lock. Two of them served no query that
-- another index does not serve as well: the user's stats read all of the
-- user's rows (generations_user), and the per-status counts of /metrics
-- scan generations_user_status, which covers status, once per scrape.
-- (generations_status also misled the planner into sorting every
-- processing row for a claim: the claim queries name their index.)
DROP INDEX generations_status;
DROP INDEX generations_user_created;
