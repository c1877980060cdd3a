-- timepool control-plane schema, version 4: the site's languages and its
-- news (issue 16). Same portable rules as 0001_initial.sql.

-- The language a user chose on the site (a URL code of web::i18n, e.g.
-- 'de'); NULL: none chosen. Set as the language cookie when they log in.
ALTER TABLE users ADD COLUMN language TEXT;

-- News items staff write for the front page and the Atom feed.
CREATE TABLE news (
    id __ID__,
    published_at BIGINT NOT NULL,        -- the day shown, midnight UTC
    created_by BIGINT REFERENCES users (id),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX news_published ON news (published_at);

-- Each item's title and text per language; English ('en') always exists,
-- the others fall back to it. The text is in the news markup
-- (web::news::markup), never HTML.
CREATE TABLE news_texts (
    news_id BIGINT NOT NULL REFERENCES news (id),
    language TEXT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (news_id, language)
);
