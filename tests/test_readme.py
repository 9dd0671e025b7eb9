import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / 'README.md'


def test_readme_python_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks, 'README.md has no python example'
    namespace = {}
    exec(compile(blocks[0], str(README), 'exec'), namespace)
    assert namespace['scores'].shape == (
        2, namespace['data']['item'].num_nodes)
    assert namespace['loss'].requires_grad
