"""facegcn.serve: the web demo (``facegcn serve``), a thin Gradio front end over the pipeline.

:mod:`facegcn.serve.app` builds the page and handles requests; :mod:`facegcn.serve.worker` runs
the reconstruction in a separate, killable process; :mod:`facegcn.serve.jobs` keeps the server's
disk bounded (job folders, Gradio's cache) and checks the port before start-up. The command itself is
:mod:`facegcn.cli.serve`; ``python -m facegcn.serve`` runs it stand-alone. Gradio is imported only
when the demo is built.
"""

__all__ = ["DemoServer", "ServeOptions", "serve"]


def __getattr__(name):
    if name in __all__:
        from facegcn.serve import app

        return getattr(app, name)
    raise AttributeError(name)
