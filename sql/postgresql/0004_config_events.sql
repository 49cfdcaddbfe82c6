-- Configuration events (docs/jobs.md, "Several instances"): a change to the slots, their
-- templates, the settings (the ingest password hash among them) or the stored provider keys
-- is announced on
-- photochanger_config when it commits, so every instance may keep what an upload reads in
-- memory and drop it at once.  One notification per statement, whatever it touched.
CREATE FUNCTION photochanger_config_event() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('photochanger_config', TG_TABLE_NAME);
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER slot_config_event AFTER INSERT OR UPDATE OR DELETE ON slot
    FOR EACH STATEMENT EXECUTE FUNCTION photochanger_config_event();

CREATE TRIGGER slot_template_config_event AFTER INSERT OR UPDATE OR DELETE ON slot_template
    FOR EACH STATEMENT EXECUTE FUNCTION photochanger_config_event();

CREATE TRIGGER app_settings_config_event AFTER INSERT OR UPDATE OR DELETE ON app_settings
    FOR EACH STATEMENT EXECUTE FUNCTION photochanger_config_event();

CREATE TRIGGER provider_secret_config_event AFTER INSERT OR UPDATE OR DELETE ON provider_secret
    FOR EACH STATEMENT EXECUTE FUNCTION photochanger_config_event();
