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
  // Form fields that are not fields of the resource.
  const NOT_RESOURCE_FIELDS = ['upload', 'url', 'url_type', 'clear_upload',
                               'save', 'id'];

  class ApiError extends Error {
    constructor(status, error) {
      super(describeApiError(error) || 'HTTP ' + status);
      this.status = status;
      this.fields = error || {};
    }

    // A refusal of the upload itself (not of the form's fields).
    get aboutTheUpload() {
      return this.status === 409 && Object.keys(this.fields).every(
        (key) => ['upload', 'resource_id', 'id', 'message'].includes(key) ||
          key.startsWith('__'));
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
    return error;
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
        issued = await this._call('resource_upload_s3_urls',
          Object.assign({resource_id: earlier}, request)).catch((error) => {
          if (error instanceof ApiError && error.status === 409) {
            return null;  // finished earlier, or not resumable
          }
          throw error;
        });
        if (!issued) {
          const created = await this._createOrNull(earlier, file);
          if (created) {
            remembered.forget(key);
            return created;
          }
          remembered.forget(key);  // start again
        }
      }
      if (!issued) {
        issued = await this._call('resource_upload_s3_urls', request);
        remembered.set(key, issued.resource_id);
      }
      await this._sendParts(file, issued);
      this._showStatus(this._('Creating the resource…'));
      const resource = await this._create(issued.resource_id, file);
      remembered.forget(key);
      return resource;
    },

    // The parts all sent earlier (a creation refused for a field): the
    // resource may be created now. Null if the upload itself is refused.
    _createOrNull: async function (resourceId, file) {
      try {
        return await this._create(resourceId, file);
      } catch (error) {
        if (error instanceof ApiError && error.aboutTheUpload) {
          return null;
        }
        throw error;
      }
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
      const worker = async () => {
        while (queue.length && !failure) {
          const part = queue.shift();
          const start = (part.part_number - 1) * issued.part_size;
          try {
            await sendPart(part, file.slice(start, start + part.size), (bytes) => {
              sending.set(part.part_number, bytes);
              show();
            });
          } catch (error) {
            failure = failure || error;
          }
        }
      };
      // Every worker ends before a failure is reported: nothing is still
      // sending when the form can be submitted again.
      await Promise.all(Array.from({length: PARALLEL_PARTS}, worker));
      if (failure) {
        throw new Error(failure.message + '. ' +
          this._('Submit the form again to resume the upload.'));
      }
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
