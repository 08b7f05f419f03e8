"""The HTML viewer: rendered for zoo compiles and opened in headless Chromium (selenium driving
Debian's chromium + chromedriver, installed by .ci/run); skipped where they are not installed."""
import json
import shutil

import pytest
import torch

import models_zoo
import siftc
from siftc.viewer.graph_svg import graph_svg, summarise

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
needs_browser = pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="needs chromium + chromedriver (.ci/run installs them)")


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    # flags that keep Chromium off this machine's closed network (see the env notes)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1400,1000"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=opts)
    yield driver
    driver.quit()


def _compile(name, policy, dump_dir=None):
    return siftc.compile(models_zoo.create(name), policy=policy, example_inputs=models_zoo.example_inputs(name, 2),
                         dump_dir=dump_dir)


def _open(browser, path):
    from selenium.webdriver.common.by import By
    browser.get_log("browser")                  # drop what earlier pages logged
    browser.get(path.resolve().as_uri())
    errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    return browser.find_element(By.TAG_NAME, "body"), errors


@needs_browser
def test_resnet18_page_in_chromium(browser, tmp_path):
    from selenium.webdriver.common.by import By
    gm = _compile("resnet18_cifar", "wide:0.75", str(tmp_path / "dumps"))
    page = siftc.render_html(gm, tmp_path / "r18.html")
    text = page.read_text()
    assert "<script" not in text and "http://" not in text.replace("http://www.w3.org", "")  # no network
    body, errors = _open(browser, page)
    assert errors == []
    for p in gm.siftc.passes:                              # every pass is listed and has a section
        assert browser.find_element(By.ID, f"pass-{p['index']}")
        assert p["name"] in body.text
    rep = siftc.report(gm)
    assert f"{rep.budget_flops:,}" in body.text            # a FLOP figure, as printed by the report
    assert "layer1.0.conv1" in text and "Channel groups" in body.text
    # open every collapsed section, so the graph pictures render and the screenshot shows them
    browser.execute_script("document.querySelectorAll('details').forEach(d => d.open = true)")
    svgs = browser.find_elements(By.CSS_SELECTOR, "svg.graph")
    assert svgs and svgs[0].size["width"] > 0
    if shutil.which("dot"):
        assert "drawn by graphviz dot" in body.text
    shot = tmp_path / "r18.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    # the dump directory renders the same page (timings aside)
    page2 = siftc.render_html(tmp_path / "dumps", tmp_path / "r18_dumps.html")
    assert page2.read_text().count('class="pass"') == text.count('class="pass"') == len(gm.siftc.passes)


@needs_browser
def test_gpt3_small_page_is_small_and_renders(browser, tmp_path):
    gm = _compile("gpt3_small", "wide:0.75,iso=nominal")
    page = siftc.render_html(gm, tmp_path / "gpt.html")
    size = page.stat().st_size
    assert size < 10_000_000, f"{size / 1e6:.1f} MB"
    body, errors = _open(browser, page)
    assert errors == []
    assert "summarised as" in body.text or "summarised as" in page.read_text()   # graphs drawn per block
    assert "substitute" in body.text


def test_plain_layout_and_block_summary():
    # no graphviz: the plain layout still draws every node of a small graph
    nodes = [{"name": f"n{i}", "op": "call_function", "target": "relu", "inputs": [f"n{i - 1}"] if i else [],
              "module": f"blocks.{i // 10}.mlp", "flops": 10, "role": None} for i in range(400)]
    svg, caption = graph_svg(nodes[:20], use_dot=False)
    assert svg.count("<rect") == 20 and "plain layout" in caption
    boxes, edges, depth = summarise(nodes)
    assert depth == 2 and len(boxes) == 40 and len(edges) == 39        # one box per blocks.K
    assert boxes[0]["label"].startswith("blocks.0\n10 nodes")


def test_render_errors_name_the_fix(tmp_path):
    with pytest.raises(siftc.SiftcError, match="dump_dir"):
        siftc.render_html(torch.fx.symbolic_trace(torch.nn.Linear(2, 2)), tmp_path / "x.html")
    with pytest.raises(siftc.SiftcError, match="not found"):
        siftc.render_html(tmp_path, tmp_path / "x.html")
    gm = _compile("mlp", "parallel:0.5", str(tmp_path / "d"))
    data = json.loads((tmp_path / "d" / "viewer.json").read_text())
    assert [p["name"] for p in data["passes"]] == gm.siftc.pipeline.split(",")
    with pytest.raises(siftc.SiftcError, match="does not exist"):
        siftc.render_html(gm, tmp_path / "missing" / "x.html")
