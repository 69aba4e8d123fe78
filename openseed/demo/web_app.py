"""The web demo's page (tools/web_demo.py): a gradio app over `WebDemoService` (openseed/demo/web_requests.py).

    app = build_app(WebDemoService(predictor))
    app.launch(**launch_options("127.0.0.1", 7860))

Left: the upload, the class-name fields, the task, optional box prompts and the score threshold. Right: the
prediction drawn over the image, the segments table (name, score, area), the COCO-format JSON to download and a
status line. A request's problem (`RequestError`) and any unexpected failure appear in the status line; details of
an unexpected failure go to the server log, never a stack trace to the page.

The app works offline: gradio analytics are disabled before gradio is imported, nothing is shared (`share=False`),
and the page uses gradio's bundled fonts and scripts only. Requests run one at a time (the model is not re-entrant).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

from .web_requests import TASKS, RequestError, WebDemoService, WebRequest, WebResult

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # read by gradio at import and on every analytics call

import gradio as gr  # noqa: E402  (after the environment above)

logger = logging.getLogger(__name__)

TABLE_HEADERS = ["name", "score", "area"]
BOXES_HELP = ('Optional box prompts, in pixels of the image: "x0,y0,x1,y1; x0,y0,x1,y1" — one mask per box. '
              'A name after a box ("10,20,200,180 cat") conditions that prompt on it (then name every box).')
MAX_UPLOAD = "50mb"


def table_rows(result: WebResult) -> list[list]:
    """The segments table: name, score with two decimals ("" for panoptic/semantic regions), area in pixels."""
    return [[s.name, "" if s.score is None else f"{s.score:.2f}", int(round(s.area))] for s in result.segments]


class PageHandler:
    """Turns the page's raw field values into a request and the service's answer into the page's outputs.

    The JSON of the latest request is written to `json_dir` (gradio copies it into its own cache for download);
    without one, to a temporary folder removed with the handler.
    """

    def __init__(self, service: WebDemoService, json_dir: str | os.PathLike | None = None):
        self.service = service
        self._temporary = tempfile.TemporaryDirectory(prefix="openseed-web-") if json_dir is None else None
        self.json_dir = Path(json_dir if json_dir is not None else self._temporary.name)
        self.requests = 0

    def __call__(self, image: dict | None, names: str, stuff: str, task: str, boxes: str, threshold: float):
        """Outputs: picture (H×W×3 uint8 or None), table rows, JSON path (or None), status markdown."""
        image = image or {}
        request = WebRequest(image_path=image.get("path"), image_name=image.get("orig_name") or "the image",
                             names=names or "", stuff=stuff or "", task=task, boxes=boxes or "",
                             score_threshold=float(threshold if threshold is not None else 0.0))
        try:
            result = self.service.run(request)
        except RequestError as error:
            return None, [], None, f"**Cannot segment this request:** {error}"
        except Exception as error:  # any failure is shown briefly in the page; the traceback goes to the log
            logger.exception("web demo request failed")
            return None, [], None, (f"**Internal error** ({type(error).__name__}: {error}). The server log has the "
                                    "details.")
        logger.info(f"{result.summary}; seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in result.seconds.items()))
        return result.picture, table_rows(result), self._write_json(result), result.summary

    def _write_json(self, result: WebResult) -> str:
        self.requests += 1
        path = self.json_dir / f"predictions_{self.requests}.json"
        path.write_text(json.dumps(result.coco), encoding="utf-8")
        previous = self.json_dir / f"predictions_{self.requests - 1}.json"
        previous.unlink(missing_ok=True)
        return str(path)


def build_app(service: WebDemoService, title: str = "OpenSeeD: segment any image with any words") -> gr.Blocks:
    """The page; `service` answers its requests."""
    handler = PageHandler(service)
    with gr.Blocks(title=title, analytics_enabled=False, delete_cache=(600, 3600)) as app:
        gr.Markdown(f"## {title}\nUpload a picture, type the names of what to find, press **Segment**.")
        with gr.Row():
            with gr.Column():
                image = gr.Image(label="image", type="filepath", sources=["upload"], elem_id="input-image")
                names = gr.Textbox(label="class names (comma-separated)", placeholder="cat, dog, grass, sky",
                                   elem_id="names")
                stuff = gr.Textbox(label="stuff names (amorphous regions, e.g. grass, sky; may repeat the above)",
                                   placeholder="grass, sky", elem_id="stuff")
                task = gr.Radio(list(TASKS), value="panoptic", label="task", elem_id="task")
                boxes = gr.Textbox(label="box prompts (optional)", info=BOXES_HELP, elem_id="boxes")
                threshold = gr.Slider(0.0, 1.0, value=0.3, step=0.05, label="score threshold (instances)",
                                      elem_id="threshold")
                submit = gr.Button("Segment", variant="primary", elem_id="segment")
            with gr.Column():
                picture = gr.Image(label="segments over the image", type="numpy", format="png",
                                   interactive=False, elem_id="result-image")
                table = gr.Dataframe(headers=TABLE_HEADERS, label="segments", interactive=False,
                                     elem_id="segments-table")
                download = gr.File(label="predictions (COCO JSON)", interactive=False, elem_id="coco-json")
                status = gr.Markdown(elem_id="status")
        # preprocess=False: the handler reads the upload itself, so an unreadable file gets a message, not gradio's
        # generic error (gradio still checks that the file lies in its upload folder)
        submit.click(handler, inputs=[image, names, stuff, task, boxes, threshold],
                     outputs=[picture, table, download, status], preprocess=False, concurrency_limit=1,
                     show_progress="minimal")
    return app


def launch_options(host: str, port: int) -> dict:
    """`Blocks.launch` settings of the demo: local only, nothing shared, no monitoring or server-side rendering."""
    return {"server_name": host, "server_port": port, "share": False, "ssr_mode": False, "mcp_server": False,
            "pwa": False, "enable_monitoring": False, "max_file_size": MAX_UPLOAD, "show_error": False,
            "footer_links": []}
