/* Direct uploads from CKAN's resource form (ckanext-dcor_depot).
 *
 * A file chosen in the form goes in parts straight to the object store:
 * resource_upload_s3_urls gives one presigned URL per part, the parts are
 * PUT a few at a time, then resource_create makes the resource. Without a
 * chosen file the form is submitted as usual. What was issued for a file
 * is remembered (localStorage), so submitting again after a failure or a
 * reload sends only the parts the store does not hold yet.
 */
this.ckan.module('dcor-direct-upload', function ($) {
  'use strict';

  const PARALLEL_PARTS = 4;
  const PART_ATTEMPTS = 4;
  const MiB = 1024 * 1024;
  // What the plugin says when another request holds an upload.
  const BUSY_TEXT = 'in use by another request';
  // Form fields that are not fields of the resource.
  const NOT_RESOURCE_FIELDS = ['upload', 'url', 'url_type', 'clear_upload',
                               'save', 'id'];

  class ApiError extends Error {
    constructor(status, error) {
      super(describeApiError(error) || 'HTTP ' + status);
      this.status = status;
      this.answered = Boolean(error);  // CKAN answered (not a proxy)
      this.fields = error || {};
    }

    // A refusal of the upload itself (not of the form's fields).
    get aboutTheUpload() {
      return this.status === 409 && Object.keys(this.fields).every(
        (key) => ['upload', 'resource_id', 'id', 'message'].includes(key) ||
          key.startsWith('__'));
    }

    // Another request (an earlier submission still completing the
    // upload) holds the upload.
    get busy() {
      return this.status === 409 && this.mentions('upload', BUSY_TEXT);
    }

    mentions(field, text) {
      return [].concat(this.fields[field] || []).some(
        (message) => String(message).includes(text));
    }
  }

  function describeApiError(error) {
    if (!error) {
      return '';
    }
    if (error.message) {
      return error.message;
    }
    return Object.keys(error).filter((key) => !key.startsWith('__'))
      .map((key) => key + ': ' + [].concat(error[key]).join(' '))
      .join('; ');
  }

  function csrfToken() {
    const field = $('meta[name="csrf_field_name"]').attr('content');
    return {field: field,
            token: field ? $('meta[name="' + field + '"]').attr('content') : ''};
  }

  // localStorage may be unavailable (privacy settings): then no resume.
  const remembered = {
    get: (key) => { try { return localStorage.getItem(key); } catch (e) { return null; } },
    set: (key, value) => { try { localStorage.setItem(key, value); } catch (e) { /* no resume */ } },
    forget: (key) => { try { localStorage.removeItem(key); } catch (e) { /* nothing kept */ } },
  };

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // PUT one part; onProgress(bytes sent so far).
  function putPart(part, blob, onProgress) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open('PUT', part.url);
      xhr.upload.onprogress = (event) => onProgress(event.loaded);
      xhr.onload = () => {
        if (xhr.status >= 200 && xhr.status < 300) {
          onProgress(blob.size);
          resolve();
        } else {
          reject(partError(part, xhr.status));
        }
      };
      xhr.onerror = () => reject(partError(part, 0));
      xhr.send(blob);
    });
  }

  function partError(part, status) {
    const error = new Error('part ' + part.part_number + ' could not be sent (' +
      (status ? 'HTTP ' + status : 'no answer from the object store') + ')');
    // No answer, or the store is busy: worth another try. A refused URL
    // (expired, upload gone) is not.
    error.retry = status === 0 || status === 408 || status === 429 || status >= 500;
    error.status = status;
    error.store = originOf(part.url);
    return error;
  }

  function originOf(url) {
    try {
      return new URL(url).origin;
    } catch (e) {
      return '';
    }
  }

  async function sendPart(part, blob, onProgress) {
    for (let attempt = 1; ; attempt += 1) {
      try {
        return await putPart(part, blob, onProgress);
      } catch (error) {
        onProgress(0);
        if (!error.retry || attempt === PART_ATTEMPTS) {
          throw error;
        }
        await sleep(1000 * Math.pow(2, attempt - 1));
      }
    }
  }

  return {
    options: {package: '', api: '/api/3/action', againUrl: '', datasetUrl: ''},

    initialize: function () {
      this.form = this.el.closest('form');
      this.progress = this.el.find('.dcor-direct-upload-progress');
      this.bar = this.el.find('.progress-bar');
      this.status = this.el.find('.dcor-direct-upload-status');
      this.error = this.el.find('.dcor-direct-upload-error');
      this.busy = false;
      this.form.on('submit', (event) => this._onSubmit(event));
    },

    _onSubmit: function (event) {
      // Looked up now: CKAN's "Remove" button replaces the input.
      const input = this.form.find('input[type="file"][name="upload"]')[0];
      const file = input && input.files && input.files[0];
      if (!file) {
        return;  // a link, or metadata only: CKAN's form does it
      }
      event.preventDefault();
      if (this.busy) {
        return;
      }
      const submitter = event.originalEvent && event.originalEvent.submitter;
      const save = submitter ? submitter.value : '';
      this._setBusy(true);
      this.upload(file).then(
        () => this._continue(save),
        (error) => {
          this._setBusy(false);
          this.error.text(error.message).prop('hidden', false);
        });
    },

    // Upload (or resume) the file, then create its resource.
    upload: async function (file) {
      const key = ['dcor-direct-upload', this.options.package, file.name,
                   file.size, file.lastModified].join('|');
      const request = {package_id: String(this.options.package),
                       name: file.name, size: file.size};
      let issued = null;
      const earlier = remembered.get(key);
      if (earlier) {
        const resumed = await this._resume(earlier, request, file);
        if (resumed.created) {
          remembered.forget(key);
          return resumed.created;
        }
        issued = resumed.issued || null;
        if (!issued) {
          remembered.forget(key);  // ended: start anew
        }
      }
      if (!issued) {
        issued = await this._call('resource_upload_s3_urls', request);
        remembered.set(key, issued.resource_id);
      }
      await this._sendParts(file, issued);
      const resource = await this._createOnce(issued.resource_id, file);
      remembered.forget(key);
      return resource;
    },

    // The upload remembered for this file: {issued} to send what the
    // store lacks, {created} if an earlier submission created its
    // resource (its answer lost), {} if it cannot go on (then ended).
    _resume: async function (resourceId, request, file) {
      let refusal;
      try {
        return {issued: await this._call('resource_upload_s3_urls',
          Object.assign({resource_id: resourceId}, request))};
      } catch (error) {
        if (!(error instanceof ApiError) || !error.aboutTheUpload) {
          throw error;
        }
        refusal = error;
      }
      if (refusal.busy) {
        throw this._busyError();  // keep the id: no second upload
      }
      if (refusal.mentions('upload', 'is complete')) {
        // Every part is stored; only the resource is missing.
        return {created: await this._createOnce(resourceId, file)};
      }
      const existing = await this._existing(resourceId, file);
      if (existing) {
        return {created: existing};
      }
      // It cannot go on: free what the store may still hold, if the site
      // says it is ours and dead. Then start anew either way.
      await this._endIfDead(resourceId).catch(() => null);
      return {};
    },

    // End an upload only if resource_upload_s3_status says it was issued
    // to this user and is expired or cannot be resumed: never another
    // user's (a sysadmin's session included), never one still going.
    _endIfDead: async function (resourceId) {
      const status = await this._call('resource_upload_s3_status',
                                      {resource_id: resourceId});
      const dead = status && status.issued_to_you === true &&
        (status.expired === true || status.resumable === false);
      if (dead) {
        await this._call('resource_upload_s3_abort', {resource_id: resourceId});
      }
      return dead;
    },

    // resource_create of an upload whose parts are all stored. A
    // creation whose answer was lost has used the upload up: then its
    // resource is there.
    _createOnce: async function (resourceId, file) {
      this._showStatus(this._('Creating the resource…'));
      try {
        return await this._create(resourceId, file);
      } catch (error) {
        if (error instanceof ApiError && error.busy) {
          throw this._busyError();
        }
        if (error instanceof ApiError && error.status === 409 &&
            error.mentions('upload', 'no upload')) {
          const existing = await this._existing(resourceId, file);
          if (existing) {
            return existing;
          }
        }
        if (!(error instanceof ApiError) || !error.answered || error.status >= 500) {
          // No answer (a proxy's timeout, the network): the site may be
          // creating the resource still.
          throw new Error(error.message + '. ' + this._(
            'The resource may have been created anyway: wait a moment, ' +
            'then submit the form again (the file is not sent again).'));
        }
        throw error;
      }
    },

    // The resource an earlier submission created for this upload, if it
    // is in this dataset and of this file (null: there is none).
    _existing: async function (resourceId, file) {
      let resource;
      try {
        resource = await this._call('resource_show', {id: resourceId});
      } catch (error) {
        if (error instanceof ApiError && [403, 404].includes(error.status)) {
          return null;
        }
        throw error;
      }
      const ours = resource.package_id === String(this.options.package) &&
        resource.url_type === 's3_upload' && Number(resource.size) === file.size;
      return ours ? resource : null;
    },

    _busyError: function () {
      return new Error(this._(
        'The site is still finishing an earlier submission of this file. ' +
        'Wait a moment, then submit the form again.'));
    },

    _sendParts: async function (file, issued) {
      const sending = new Map();  // part number -> bytes sent
      const stored = file.size - issued.parts.reduce((sum, p) => sum + p.size, 0);
      const show = () => {
        let sent = stored;
        sending.forEach((bytes) => { sent += bytes; });
        this._showProgress(file, sent);
      };
      if (issued.complete_parts.length) {
        this.status.data('resumed', this._(
          'Resuming: %(done)s of %(total)s parts were already stored.',
          {done: issued.complete_parts.length,
           total: issued.complete_parts.length + issued.parts.length}));
      }
      show();
      const queue = issued.parts.slice();
      let failure = null;
      let partsSent = 0;
      const worker = async () => {
        while (queue.length && !failure) {
          const part = queue.shift();
          const start = (part.part_number - 1) * issued.part_size;
          try {
            await sendPart(part, file.slice(start, start + part.size), (bytes) => {
              sending.set(part.part_number, bytes);
              show();
            });
            partsSent += 1;
          } catch (error) {
            failure = failure || error;
          }
        }
      };
      // Every worker ends before a failure is reported: nothing is still
      // sending when the form can be submitted again.
      await Promise.all(Array.from({length: PARALLEL_PARTS}, worker));
      if (failure && failure.status === 0 && !partsSent) {
        throw this._storeUnreachable(failure.store);
      }
      if (failure) {
        throw new Error(failure.message + '. ' +
          this._('Submit the form again to resume the upload.'));
      }
    },

    // Not one part got an answer: the store is out of the browser's reach
    // (blocked, internal only) or refuses this page (its CORS rule).
    _storeUnreachable: function (store) {
      return new Error(this._(
        'Your browser could not reach the object store (%(store)s), so ' +
        'the file was not uploaded. The store may not be reachable from ' +
        'your network, or it may not accept uploads from this site (its ' +
        'CORS rule). Please tell the site\'s administrators.',
        {store: store || this._('unknown address')}));
    },

    _create: function (resourceId, file) {
      const csrf = csrfToken();
      const fields = {};
      new FormData(this.form[0]).forEach((value, name) => {
        if (typeof value === 'string' && value !== '' && name !== csrf.field &&
            !NOT_RESOURCE_FIELDS.includes(name)) {
          fields[name] = value;
        }
      });
      return this._call('resource_create', Object.assign(fields, {
        package_id: String(this.options.package), id: resourceId,
        url_type: 's3_upload', name: fields.name || file.name}));
    },

    // An API action with the session's cookie (and CKAN's CSRF token).
    _call: async function (action, body) {
      const headers = {'Content-Type': 'application/json'};
      const csrf = csrfToken();
      if (csrf.token) {
        headers['X-CSRFToken'] = csrf.token;
      }
      let response;
      try {
        response = await fetch(this.options.api + '/' + action, {
          method: 'POST', credentials: 'same-origin', headers: headers,
          body: JSON.stringify(body)});
      } catch (error) {
        throw new Error(this._('The site could not be reached:') + ' ' + error.message);
      }
      const reply = await response.json().catch(() => null);
      if (!response.ok || !reply || !reply.success) {
        throw new ApiError(response.status, reply && reply.error);
      }
      return reply.result;
    },

    // Go where CKAN's form would have gone after creating the resource.
    _continue: function (save) {
      this._showStatus(this._('Done.'));
      if (save === 'again') {
        window.location.assign(this.options.againUrl);
      } else if (save === 'go-metadata' || save === 'go-dataset') {
        // The form sent without data: CKAN publishes the draft dataset
        // (or goes back to its fields), as after its own upload.
        const csrf = csrfToken();
        const form = $('<form method="post" hidden></form>')
          .attr('action', this.form.attr('action'));
        const fields = {id: '', save: save};
        if (csrf.field) {
          fields[csrf.field] = csrf.token;
        }
        Object.keys(fields).forEach((name) => {
          $('<input type="hidden">').attr('name', name).val(fields[name]).appendTo(form);
        });
        form.appendTo(document.body)[0].submit();
      } else {
        window.location.assign(this.options.datasetUrl);
      }
    },

    _setBusy: function (busy) {
      this.busy = busy;
      this.form.find('button[name="save"]').prop('disabled', busy);
      if (busy) {
        this.error.prop('hidden', true).text('');
        this.status.removeData('resumed');
        this.progress.prop('hidden', false);
      }
    },

    _showProgress: function (file, sent) {
      const percent = file.size ? Math.floor(100 * sent / file.size) : 100;
      this.bar.css('width', percent + '%').attr('aria-valuenow', percent);
      this._showStatus(this._(
        'Uploading %(name)s: %(sent)s of %(size)s MiB (%(percent)s %%)',
        {name: file.name, sent: (sent / MiB).toFixed(1),
         size: (file.size / MiB).toFixed(1), percent: percent}));
    },

    _showStatus: function (text) {
      const resumed = this.status.data('resumed');
      this.status.text(resumed ? resumed + ' ' + text : text);
    },
  };
});
