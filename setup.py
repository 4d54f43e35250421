from configparser import ConfigParser
from pathlib import Path
import setuptools, shlex, shutil
from setuptools.command.build_py import build_py

class build_py_with_resources(build_py):
    "Also put the data manifest and the figure notebooks into built (non-editable) packages, so `neurocomp data` and `neurocomp reproduce` work from a wheel; an editable install reads them from the checkout."
    def run(self):
        super().run()
        root, dest = Path(__file__).resolve().parent, Path(self.build_lib) / 'neurocomp' / 'resources'
        dest.mkdir(parents=True, exist_ok=True)
        if (root / 'data_manifest.yml').exists(): shutil.copyfile(root / 'data_manifest.yml', dest / 'data_manifest.yml')
        if (root / 'nbs' / 'figures').is_dir():
            (dest / 'figures').mkdir(exist_ok=True)
            for nb in (root / 'nbs' / 'figures').glob('*.ipynb'): shutil.copyfile(nb, dest / 'figures' / nb.name)

# nbdev 2 keeps package metadata in settings.ini; this reads it (the nbdev 2 template).
config = ConfigParser(delimiters=['='])
config.read('settings.ini', encoding='utf-8')
cfg = config['DEFAULT']

cfg_keys = 'version description keywords author author_email'.split()
expected = cfg_keys + "lib_name user branch license status min_python audience language".split()
for o in expected: assert o in cfg, "missing expected setting: {}".format(o)
setup_cfg = {o:cfg[o] for o in cfg_keys}

licenses = {'apache2': ('Apache Software License 2.0','OSI Approved :: Apache Software License')}
statuses = ['1 - Planning','2 - Pre-Alpha','3 - Alpha','4 - Beta','5 - Production/Stable','6 - Mature','7 - Inactive']
py_versions = '3.10 3.11 3.12 3.13'.split()

requirements = shlex.split(cfg.get('requirements', ''))
min_python = cfg['min_python']
lic = licenses.get(cfg['license'].lower(), (cfg['license'], None))
dev_requirements = shlex.split(cfg.get('dev_requirements', ''))

setuptools.setup(
    name = cfg['lib_name'],
    license = lic[0],
    classifiers = [
        'Development Status :: ' + statuses[int(cfg['status'])],
        'Intended Audience :: ' + cfg['audience'].title(),
        'Natural Language :: ' + cfg['language'].title(),
    ] + ['Programming Language :: Python :: '+o for o in py_versions[py_versions.index(min_python):]],
    url = cfg['git_url'],
    packages = setuptools.find_packages(include=['neurocomp', 'neurocomp.*']),
    include_package_data = True,
    package_data = {'neurocomp': ['resources/*', 'resources/**/*']},
    install_requires = requirements,
    extras_require={'dev': dev_requirements},
    dependency_links = cfg.get('dep_links','').split(),
    python_requires  = '>=' + cfg['min_python'],
    long_description = open('README.md', encoding='utf-8').read(),
    long_description_content_type = 'text/markdown',
    zip_safe = False,
    cmdclass = {'build_py': build_py_with_resources},
    entry_points = {
        'console_scripts': cfg.get('console_scripts','').split(),
        'nbdev': [f'{cfg.get("lib_path")}={cfg.get("lib_path")}._modidx:d']
    },
    **setup_cfg)
