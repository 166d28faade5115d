"""Where papers' bytes come from: PDFs over HTTP (`http`, on aiohttp via `aio_transport`), from
local files (`local`) or arXiv's bulk tars (`tar`), all behind the `base.Source` interface; and
papers' metadata from arXiv's export API (`arxiv_api`) or its metadata file (`metadata_file`)."""
