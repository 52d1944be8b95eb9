"""The test suite's real services start: a PostgreSQL server and headless Chromium."""

import sqlalchemy as sa


def test_pg(postgres_url):
    e = sa.create_engine(postgres_url)
    with e.connect() as c:
        assert c.execute(sa.text("select 1")).scalar() == 1
def test_browser(browser):
    page = browser.new_page()
    page.set_content("<h1>hi</h1>")
    assert page.inner_text("h1") == "hi"
