-- Job events for the other instances (docs/jobs.md, "Several instances"): a pending job that
-- this instance's workers could not take at once, and a job that became final.  Sent by a
-- trigger, so an upload costs no extra statement; delivered at commit.  Hints only: every
-- instance also polls slowly, and a listener that reconnects catches up.
CREATE FUNCTION photochanger_job_event() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.status = 'pending' THEN
            PERFORM pg_notify('photochanger_jobs', 'queued ' || NEW.id);
        END IF;
    ELSIF NEW.is_finalized AND NOT OLD.is_finalized THEN
        PERFORM pg_notify('photochanger_jobs', 'final ' || NEW.id);
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER job_event AFTER INSERT OR UPDATE OF is_finalized ON job
    FOR EACH ROW EXECUTE FUNCTION photochanger_job_event();
