-- The admin list pages through bookings of one status by id.
CREATE INDEX IF NOT EXISTS bookings_status_id ON bookings (status, id);
