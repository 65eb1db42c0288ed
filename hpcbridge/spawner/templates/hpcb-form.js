// hpcbridge's spawn form (hpcbridge/spawner/form.py renders it; the hub checks whatever
// is submitted, this script only helps to choose values that fit).
(function () {
  const data = JSON.parse(document.getElementById('hpcb-data').textContent);
  const field = function (name) { return document.getElementById('hpcb-' + name); };
  const checked = function (name) {
    const radio = document.querySelector('input[name="' + name + '"]:checked');
    return radio ? radio.value : '';
  };
  const choose = function (name, value) {
    document.querySelectorAll('input[name="' + name + '"]').forEach(function (radio) {
      radio.checked = radio.value === value;
    });
  };
  const form = document.getElementById('hpcb-form').closest('form');

  // the chosen partition's limits on the fields; only its GPU types are offered
  function applyLimits() {
    const l = data.limits[checked('partition')];
    if (!l) { return; }
    field('cores').max = l.cores;
    field('gpus').max = l.gpus;
    field('gpus').disabled = l.gpus === 0;
    const types = field('gpu_type');
    if (types) {
      types.querySelectorAll('option').forEach(function (option) {
        option.disabled = option.value !== '' && l.gpu_types.indexOf(option.value) < 0;
      });
      if (types.selectedOptions[0] && types.selectedOptions[0].disabled) { types.value = ''; }
      types.disabled = l.gpu_types.length === 0;
    }
  }
  // a new preset or partition: values that fit it, never a combination the hub refuses
  function fill() {
    const values = (data.defaults[checked('preset')] || {})[checked('partition')];
    if (!values) { return; }
    data.derived.forEach(function (name) { field(name).value = values[name]; });
  }

  // the scheduler's forecast and the cost of exactly these values, asked as they change
  let timer = null;
  let asked = 0;
  function estimate() {
    clearTimeout(timer);
    timer = setTimeout(function () {
      const params = new URLSearchParams(new FormData(form));
      const mine = ++asked;
      const base = (window.jhdata && window.jhdata.base_url) || '/hub/';
      fetch(base + 'hpcbridge/estimate?' + params.toString(), {credentials: 'same-origin'})
        .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
        .then(function (answer) { if (mine === asked) { show(answer); } })
        .catch(function () {
          if (mine === asked) {
            show({start: 'Estimated start: the hub could not ask the scheduler now.',
                  cost: ''});
          }
        });
    }, 400);
  }
  function show(answer) {
    const start = field('start');
    const cost = field('cost');
    if (answer.problems) {
      start.textContent = 'Not a request the hub accepts: ' +
        answer.problems.map(function (p) { return p[1]; }).join(' ');
      cost.textContent = '';
      return;
    }
    start.textContent = answer.start;
    cost.textContent = answer.over
      ? answer.cost + ' Over budget: the hub will refuse this request.'
      : answer.cost;
  }

  // several clusters: the cluster comes first; presets, partitions, accounts and
  // environments of the other clusters are hidden (and a hidden choice is replaced)
  const cluster = field('cluster');
  function followCluster() {
    if (!cluster) { return; }
    const other = function (el) {
      return Boolean(el.dataset.cluster) && el.dataset.cluster !== cluster.value;
    };
    ['preset', 'partition'].forEach(function (name) {
      const radios = document.querySelectorAll('input[name="' + name + '"]');
      radios.forEach(function (radio) {
        const holder = radio.closest('[data-cluster]');
        const hide = Boolean(holder) && other(holder);
        if (holder) { holder.hidden = hide; }
        radio.disabled = hide;
      });
      if (!checked(name) || document.querySelector('input[name="' + name + '"]:checked:disabled')) {
        const first = document.querySelector('input[name="' + name + '"]:not(:disabled)');
        if (first) { first.checked = true; }
      }
    });
    ['account', 'environment'].forEach(function (name) {
      const select = field(name);
      if (!select || !select.options) { return; }
      Array.prototype.forEach.call(select.options, function (o) {
        o.hidden = o.disabled = other(o);
      });
      if (select.selectedOptions[0] && select.selectedOptions[0].disabled) { select.value = ''; }
    });
  }
  if (cluster) {
    cluster.addEventListener('change', function () {
      followCluster();
      if (data.presets[checked('preset')]) { choose('partition', data.presets[checked('preset')]); }
      applyLimits(); fill(); estimate();
    });
  }

  // click too: choosing the card that is already checked applies its values again
  document.querySelectorAll('input[name="preset"]').forEach(function (radio) {
    const apply = function () {
      if (data.presets[radio.value]) { choose('partition', data.presets[radio.value]); }
      if (cluster && data.limits[checked('partition')]) {
        cluster.value = data.limits[checked('partition')].cluster;
        followCluster();
      }
      applyLimits(); fill(); estimate();
    };
    radio.addEventListener('change', apply);
    radio.addEventListener('click', apply);
  });
  document.querySelectorAll('input[name="partition"]').forEach(function (radio) {
    radio.addEventListener('change', function () { applyLimits(); fill(); estimate(); });
  });
  form.addEventListener('input', estimate);
  form.addEventListener('change', estimate);
  followCluster();
  applyLimits();
  estimate();
  // the refusal stands next to the fields it concerns; JupyterHub's banner would repeat it
  const banner = document.querySelector('.spawn-error-msg');
  if (banner && data.placed) { banner.hidden = true; }
})();
