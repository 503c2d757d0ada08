DROP TABLE attempts;
DROP TABLE deliveries;
DROP TABLE events;
DROP TABLE subscriptions;
DROP TABLE endpoints;
DROP TABLE event_types;
DROP TABLE tokens;
