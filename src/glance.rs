//! Glance images that carry the ConfKeyManager's key ID: an encrypted volume uploaded to an
//! image while Cinder used the ConfKeyManager left the image property `cinder_encryption_key_id`
//! at the all-zeros ID. Creating a volume from such an image needs that key, so these images
//! keep `fixed_key` alive as surely as any Cinder row.
//!
//! What keymigrate asks Glance (v2, with the identity that acts in the rows' projects, which
//! must be an admin to see every project's images): the images with that property, listed twice
//! because Glance lists hidden images (`os_hidden`) only when asked for them alone; one image;
//! and the JSON-patch that replaces the property. Glance has no compare-and-swap: the caller
//! reads the image again right before a patch and after it.
//!
//! Where Glance is ([`GlanceEndpoint`]): the URL given, else Keystone's catalog as Cinder looks
//! it up (`[DEFAULT] glance_catalog_info`), in the region of the Barbican keymigrate writes to,
//! never a guess among several regions.
//!
//! [`rule`] decides what happens to an image: only a private image, with an owner, that does
//! not look like a server snapshot, is migrated; the others would change who can use the image
//! (its key would move from "anyone who has the fixed key" to the owner's project), so they are
//! reported with a reason for the operator.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::cinder::ZERO_KEY_ID;
use crate::error::{Error, Result};
use crate::http::{self, Body, Client, Response};
use crate::keystone::{AuthorizedError, Endpoint, Keystone, Request, Subject};

/// The image property Cinder sets to the volume's key ID when it uploads an encrypted volume.
pub const KEY_PROPERTY: &str = "cinder_encryption_key_id";
/// Since Cinder 15: `on_image_deletion` makes Glance delete the key with the image.
pub const POLICY_PROPERTY: &str = "cinder_encryption_key_deletion_policy";

/// Glance lists at most this many images per request.
const PAGE: usize = 1000;

/// One image, as keymigrate needs it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Image {
    pub id: String,
    pub name: Option<String>,
    /// The owner project's ID.
    pub owner: Option<String>,
    /// `private`, `shared`, `community` or `public`.
    pub visibility: String,
    pub hidden: bool,
    pub status: String,
    /// `cinder_encryption_key_id`.
    pub key: Option<String>,
    /// `cinder_encryption_key_deletion_policy`.
    pub deletion_policy: Option<String>,
    /// Carries block device mapping properties: a server snapshot that inherited the volume
    /// image's properties (Nova before 21.0.0 copied them).
    pub server_snapshot: bool,
    /// For a shared image, the projects it is shared with (any member status: a member
    /// reaches the image by its ID whether or not it accepted); `None` for other
    /// visibilities, or before they are listed.
    pub members: Option<Vec<String>>,
    /// Keystone has no project of the image's owner ID (looked up once per owner).
    pub owner_gone: bool,
}

impl Image {
    fn from_json(v: &Map<String, Value>) -> Option<Image> {
        let text = |k: &str| v.get(k).and_then(Value::as_str).map(String::from);
        Some(Image {
            id: text("id")?,
            name: text("name"),
            owner: text("owner"),
            visibility: text("visibility").unwrap_or_default(),
            hidden: v.get("os_hidden").and_then(Value::as_bool).unwrap_or(false),
            status: text("status").unwrap_or_default(),
            key: text(KEY_PROPERTY),
            deletion_policy: text(POLICY_PROPERTY),
            server_snapshot: ["block_device_mapping", "bdm_v2"].iter().any(|k| v.contains_key(*k)),
            members: None,
            owner_gone: false,
        })
    }

    /// Still on the all-zeros ID, byte for byte.
    pub fn is_zero(&self) -> bool {
        self.key.as_deref() == Some(ZERO_KEY_ID)
    }
}

/// What `migrate --images` does with an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageAction {
    /// A secret in the owner's project, and the property replaced.
    NewSecret,
    /// A shared image, with `--shared-images acl`: a secret in the owner's project whose ACL
    /// also lets read every user who holds a role in a member project at the time of the run.
    NewSecretForMembers,
    /// Reported, never changed; the reason says why.
    Reported(&'static str),
}

impl ImageAction {
    /// `migrate` gives the image a secret.
    pub fn migrates(self) -> bool {
        !matches!(self, ImageAction::Reported(_))
    }
}

impl std::fmt::Display for ImageAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImageAction::NewSecret => f.write_str("new secret"),
            ImageAction::NewSecretForMembers => f.write_str("new secret, read ACL for the member projects' users"),
            ImageAction::Reported(reason) => write!(f, "reported: {reason}"),
        }
    }
}

/// `--shared-images`: what `migrate --images` does with an image shared with other projects.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum SharedImages {
    /// Reported, never changed: the operator decides.
    #[default]
    Report,
    /// Migrated: the secret in the owner's project, and a read ACL for every user who holds a
    /// role in a member project now. Users who join a member project later cannot read it.
    Acl,
}

pub const SHARED: &str = "visibility is shared: its members' projects use the key too, and a secret in the owner's project would lock them out (--shared-images acl lets their users read it)";
pub const PUBLIC: &str = "visibility is public: every project may use the key, and a secret in the owner's project would lock them out";
pub const COMMUNITY: &str = "visibility is community: every project may use the key, and a secret in the owner's project would lock them out";
pub const NO_OWNER: &str = "the image has no owner project for the secret to belong to";
pub const OWNER_GONE: &str = "its owner project no longer exists in Keystone, so no secret can belong to it";
pub const SERVER_SNAPSHOT: &str = "it carries block device mapping properties: a server snapshot that inherited them, whose volumes have keys of their own";
pub const UNKNOWN_VISIBILITY: &str = "its visibility is not one keymigrate knows";

/// The rule for one image on the all-zeros ID.
pub fn rule(image: &Image, shared: SharedImages) -> ImageAction {
    if image.server_snapshot {
        return ImageAction::Reported(SERVER_SNAPSHOT);
    }
    let mut action = ImageAction::NewSecret;
    match image.visibility.as_str() {
        "private" => {}
        // Shared with nobody (yet): used by its owner's project only, like a private image.
        "shared" if image.members.as_ref().is_some_and(Vec::is_empty) => {}
        // The members are known: their users can be named in the ACL.
        "shared" if shared == SharedImages::Acl && image.members.is_some() => action = ImageAction::NewSecretForMembers,
        "shared" => return ImageAction::Reported(SHARED),
        "public" => return ImageAction::Reported(PUBLIC),
        "community" => return ImageAction::Reported(COMMUNITY),
        _ => return ImageAction::Reported(UNKNOWN_VISIBILITY),
    }
    if !image.owner.as_deref().is_some_and(crate::cinder::is_owner) {
        return ImageAction::Reported(NO_OWNER);
    }
    if image.owner_gone {
        return ImageAction::Reported(OWNER_GONE);
    }
    action
}

/// What glance-api.conf says of Glance's key manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GlanceKeyManager {
    Barbican,
    /// Another backend, as named there.
    Other(String),
    /// The file could not be read or parsed; why.
    Unknown(String),
}

/// Reads `[key_manager] backend` from glance-api.conf (castellan's default, Barbican, when
/// unset). Nothing else of the file is looked at or shown.
pub fn key_manager_of(path: &std::path::Path) -> GlanceKeyManager {
    let conf = match crate::conf::Conf::load(&[crate::conf::ConfigArg::File(path.to_path_buf())], std::iter::empty()) {
        Ok(c) => c,
        Err(e) => return GlanceKeyManager::Unknown(e.to_string()),
    };
    let backend = match conf.get(&crate::conf::KEY_MANAGER_BACKEND) {
        Ok(v) => v.map(|v| v.value.expose().trim().to_string()).unwrap_or_default(),
        Err(e) => return GlanceKeyManager::Unknown(e.to_string()),
    };
    let short = backend.rsplit('.').next().unwrap_or_default();
    if backend.is_empty() || short == "barbican" || short == "BarbicanKeyManager" {
        GlanceKeyManager::Barbican
    } else {
        GlanceKeyManager::Other(backend)
    }
}

/// Logs, once per run, whether Glance's key manager lets it delete a migrated image's secret.
pub fn check_key_manager(path: &std::path::Path) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| match key_manager_of(path) {
        GlanceKeyManager::Barbican => log::info!("Glance's key manager is Barbican ({})", path.display()),
        GlanceKeyManager::Other(backend) => log::warn!(
            "Glance's [key_manager] backend in {} is '{backend}', not barbican: deleting a migrated image will not delete its secret; set backend = barbican in every glance-api.conf",
            path.display()
        ),
        GlanceKeyManager::Unknown(why) => log::warn!(
            "Could not check Glance's key manager ({why}): on the Glance nodes, [key_manager] backend in glance-api.conf must be barbican, or deleting a migrated image will not delete its secret (--glance-config PATH names the file)"
        ),
    });
}

/// Where Glance is, as Cinder finds it (`cinder/image/glance.py`, `get_api_servers`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GlanceEndpoint {
    /// `--glance-endpoint`, else `[DEFAULT] glance_api_servers`' first entry: used as given.
    Url(String),
    /// Neither: Keystone's catalog.
    Catalog(CatalogLookup),
}

/// What to look for in the catalog: `[DEFAULT] glance_catalog_info`'s service type and
/// interface, and the region Glance must be in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogLookup {
    pub service_type: String,
    /// `public`, `internal` or `admin`.
    pub interface: String,
    /// The region, and the option that names it (`[barbican] barbican_region_name`); `None`
    /// when no option does.
    pub region: Option<(String, &'static str)>,
}

/// `glance_catalog_info`, `<service_type>:<service_name>:<endpoint_type>` (Cinder's default
/// `image:glance:publicURL`), as the service type and the interface (`public`, `internal`,
/// `admin`). Cinder matches the service type only, so the name is not used either. The error
/// says what is wrong without repeating the value.
pub fn parse_catalog_info(value: &str) -> Result<(String, String), String> {
    let parts: Vec<&str> = value.trim().split(':').map(str::trim).collect();
    let [service_type, _name, endpoint_type] = parts.as_slice() else {
        return Err(format!(
            "has {} field(s), not the 3 of <service_type>:<service_name>:<endpoint_type> (Cinder's default: image:glance:publicURL)",
            parts.len()
        ));
    };
    if service_type.is_empty() {
        return Err("has no service type before the first ':' (Cinder's default: image:glance:publicURL)".into());
    }
    let interface = endpoint_type.strip_suffix("URL").unwrap_or(endpoint_type);
    if !["public", "internal", "admin"].contains(&interface) {
        return Err(format!("endpoint type '{endpoint_type}' is not one of publicURL, internalURL, adminURL"));
    }
    Ok((service_type.to_string(), interface.to_string()))
}

/// The lookup's one endpoint among `found`, the catalog's endpoints of its service type at its
/// interface: the first in its region; without a region, the first, if every one is in the same
/// region. Several regions and none named is refused: another region's Glance would have its
/// images pointed at secrets in the Barbican keymigrate writes to, which that region's services
/// do not read.
pub fn locate(found: &[Endpoint], lookup: &CatalogLookup) -> Result<String> {
    let CatalogLookup { service_type, interface, region } = lookup;
    let mut regions: Vec<&str> = Vec::new();
    for e in found {
        let r = e.region().unwrap_or("(no region)");
        if !regions.contains(&r) {
            regions.push(r);
        }
    }
    let listed = regions.join(", ");
    match region {
        Some((r, option)) => found.iter().find(|e| e.region() == Some(r.as_str())).map(|e| e.url.clone()).ok_or_else(|| {
            let elsewhere = if regions.is_empty() { ")".to_string() } else { format!("), only in {listed}") };
            Error::Service(format!(
                "Keystone's catalog has no '{service_type}' endpoint for interface {interface} in region {r} ({option}{elsewhere}; \
                 point [DEFAULT] glance_api_servers or --glance-endpoint at region {r}'s Glance, or check {option} and \
                 [DEFAULT] glance_catalog_info"
            ))
        }),
        None if regions.len() > 1 => Err(Error::Service(format!(
            "Keystone's catalog lists '{service_type}' endpoints for interface {interface} in several regions ({listed}) \
             and keymigrate will not guess which region's Glance to use; set [barbican] barbican_region_name to the region \
             of the Barbican keymigrate writes to, or [DEFAULT] glance_api_servers or --glance-endpoint"
        ))),
        None => found.first().map(|e| e.url.clone()).ok_or_else(|| {
            Error::Service(format!(
                "Keystone's catalog has no '{service_type}' endpoint for interface {interface}; \
                 set [DEFAULT] glance_catalog_info to Glance's service type and interface, or glance_api_servers or --glance-endpoint"
            ))
        }),
    }
}

/// Glance's image API, called with one identity's tokens.
pub struct Glance {
    http: Client,
    keystone: Arc<Keystone>,
    /// `…/v2`, without a trailing slash.
    base: String,
}

#[derive(Deserialize)]
struct Listing {
    #[serde(default)]
    images: Vec<Map<String, Value>>,
    next: Option<String>,
}

impl Glance {
    /// Glance at `endpoint` (a URL versionless or ending in `/v2`, or the catalog's), spoken
    /// to with `keystone`'s TLS settings and tokens.
    pub fn connect(keystone: Arc<Keystone>, endpoint: &GlanceEndpoint) -> Result<Glance> {
        let settings = keystone.settings();
        let http = Client::new(&settings.tls, settings.timeout, keystone.http().retry)
            .map_err(|e| Error::config_value(e.option, e.message))?;
        let (url, from) = match endpoint {
            GlanceEndpoint::Url(e) => (e.clone(), String::new()),
            GlanceEndpoint::Catalog(lookup) => {
                let url = locate(&keystone.catalog_endpoints(&lookup.service_type, &lookup.interface)?, lookup)?;
                let region = lookup.region.as_ref().map(|(r, _)| format!(", region {r}")).unwrap_or_default();
                (url, format!(" (Keystone's catalog: '{}', interface {}{region})", lookup.service_type, lookup.interface))
            }
        };
        let base = crate::barbican::versioned(&url, "v2");
        log::info!("Using Glance at {}{from}", http::redact_url(&base));
        Ok(Glance { http, keystone, base })
    }

    /// The identity Glance is called with.
    pub fn keystone(&self) -> &Arc<Keystone> {
        &self.keystone
    }

    /// Refuses an identity whose token carries no `admin` role: Glance would list only its
    /// own project's images and the public ones, and "no image left" would be a lie.
    pub fn require_admin(&self, source: &str) -> Result<()> {
        let me = crate::grants::Grants::new(self.keystone.clone()).whoami()?;
        if me.roles.iter().any(|r| r == "admin") {
            return Ok(());
        }
        Err(Error::Credentials(format!(
            "the identity from {source} holds no admin role, so Glance would show it only its own project's images; \
             give --images an admin (--os-cloud)"
        )))
    }

    /// Every image, of every project, whose `cinder_encryption_key_id` is the all-zeros ID:
    /// visible ones, then hidden ones (Glance lists them only when asked for them alone).
    /// `owners`: only these projects' images (Glance's `owner` filter); empty: every project's.
    pub fn zero_images(&self, owners: &[String]) -> Result<Vec<Image>> {
        let mut images = Vec::new();
        for (hidden, owner) in passes(owners) {
            let mut path = format!(
                "/images?{KEY_PROPERTY}={ZERO_KEY_ID}&visibility=all&os_hidden={hidden}&limit={PAGE}&sort_key=id&sort_dir=asc{owner}"
            );
            // Bounded: Glance's marker pagination always moves on; a loop would be a bug there.
            for _ in 0..1_000_000 {
                let r = self.call("GET", &path, Body::None)?;
                if r.status != 200 {
                    return Err(self.refused("GET", &path, &r));
                }
                let page: Listing = self.answer(&r, "GET", &path)?;
                // The filter is Glance's; keymigrate compares the value itself.
                images.extend(page.images.iter().filter_map(Image::from_json).filter(Image::is_zero).filter(|i| owned_by(i, owners)));
                match page.next {
                    // `next` is a path from the API root (`/v2/images?marker=…`).
                    Some(next) if !page.images.is_empty() => path = next.strip_prefix("/v2").unwrap_or(&next).to_string(),
                    _ => break,
                }
            }
        }
        images.sort_by(|a, b| a.id.cmp(&b.id));
        images.dedup_by(|a, b| a.id == b.id);
        for image in images.iter_mut().filter(|i| i.visibility == "shared") {
            image.members = Some(self.members(&image.id)?);
        }
        // Whether each owner project still exists: once per owner, for the images the rule
        // could migrate.
        let grants = crate::grants::Grants::new(self.keystone.clone());
        let mut known: std::collections::HashMap<String, bool> = std::collections::HashMap::new();
        for image in images.iter_mut().filter(|i| ["private", "shared"].contains(&i.visibility.as_str()) && !i.server_snapshot) {
            let Some(owner) = image.owner.clone().filter(|o| crate::cinder::is_owner(o)) else { continue };
            let exists = match known.get(&owner) {
                Some(e) => *e,
                None => {
                    let e = grants.project_exists(&owner)?;
                    known.insert(owner, e);
                    e
                }
            };
            image.owner_gone = !exists;
        }
        Ok(images)
    }

    /// Every image, of every project, whose `cinder_encryption_key_id` is set to anything but
    /// the all-zeros ID: what `verify --images` and `rollback --images` look at (Glance cannot
    /// filter by a prefix, so every image is listed).
    pub fn keyed_images(&self, owners: &[String]) -> Result<Vec<Image>> {
        let mut images = Vec::new();
        for (hidden, owner) in passes(owners) {
            let mut path = format!("/images?visibility=all&os_hidden={hidden}&limit={PAGE}&sort_key=id&sort_dir=asc{owner}");
            for _ in 0..1_000_000 {
                let r = self.call("GET", &path, Body::None)?;
                if r.status != 200 {
                    return Err(self.refused("GET", &path, &r));
                }
                let page: Listing = self.answer(&r, "GET", &path)?;
                images.extend(
                    page.images.iter().filter_map(Image::from_json).filter(|i| i.key.is_some() && !i.is_zero() && owned_by(i, owners)),
                );
                match page.next {
                    Some(next) if !page.images.is_empty() => path = next.strip_prefix("/v2").unwrap_or(&next).to_string(),
                    _ => break,
                }
            }
        }
        images.sort_by(|a, b| a.id.cmp(&b.id));
        images.dedup_by(|a, b| a.id == b.id);
        Ok(images)
    }

    /// One image as it is now; `None` when Glance has no such image.
    pub fn image(&self, id: &str) -> Result<Option<Image>> {
        let path = format!("/images/{}", segment(id));
        let r = self.call("GET", &path, Body::None)?;
        match r.status {
            200 => {
                let v: Map<String, Value> = self.answer(&r, "GET", &path)?;
                Ok(Image::from_json(&v))
            }
            404 => Ok(None),
            _ => Err(self.refused("GET", &path, &r)),
        }
    }

    /// The projects an image is shared with, whatever their member status.
    pub fn members(&self, id: &str) -> Result<Vec<String>> {
        let path = format!("/images/{}/members", segment(id));
        let r = self.call("GET", &path, Body::None)?;
        if r.status != 200 {
            return Err(self.refused("GET", &path, &r));
        }
        #[derive(Deserialize)]
        struct Members {
            #[serde(default)]
            members: Vec<Member>,
        }
        #[derive(Deserialize)]
        struct Member {
            member_id: String,
        }
        let mut ids: Vec<String> = self.answer::<Members>(&r, "GET", &path)?.members.into_iter().map(|m| m.member_id).collect();
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    /// `PATCH /v2/images/{id}`: replaces `cinder_encryption_key_id` with `key_id`, and nothing
    /// else. Returns the image as Glance answered it.
    pub fn replace_key(&self, id: &str, key_id: &str) -> Result<std::result::Result<Image, PatchRefused>> {
        let path = format!("/images/{}", segment(id));
        let patch = serde_json::to_vec(&serde_json::json!([{"op": "replace", "path": format!("/{KEY_PROPERTY}"), "value": key_id}]))
            .map_err(|e| Error::Internal(e.to_string()))?;
        let r = self.call("PATCH", &path, Body::Typed("application/openstack-images-v2.1-json-patch", &patch))?;
        match r.status {
            200 => {
                let v: Map<String, Value> = self.answer(&r, "PATCH", &path)?;
                Image::from_json(&v).map(Ok).ok_or_else(|| Error::Service(format!("PATCH {}: the answer has no image id", self.redacted(&path))))
            }
            // Property protections, a deleted or locked image, a conflict: this image only.
            403 | 404 | 409 | 413 => Ok(Err(PatchRefused(format!("PATCH {}: {}", self.redacted(&path), r.error_text())))),
            _ => Err(self.refused("PATCH", &path, &r)),
        }
    }

    fn call(&self, method: &str, path: &str, body: Body<'_>) -> Result<Response> {
        let url = format!("{}{path}", self.base);
        let request = Request { method, url: &url, headers: &[], body };
        self.keystone.send_authorized(&self.http, "Glance", request, Subject::None, &mut false).map_err(|e| match e {
            AuthorizedError::Token(e) => e,
            AuthorizedError::GaveUp(g) => Error::Service(format!("{method} {}: {}", self.redacted(path), g.message())),
            AuthorizedError::Refused(r) => Error::Credentials(format!(
                "{method} {}: {} after authenticating again; Glance does not accept keymigrate's Keystone tokens",
                self.redacted(path),
                r.error_text()
            )),
        })
    }

    fn answer<T: serde::de::DeserializeOwned>(&self, r: &Response, method: &str, path: &str) -> Result<T> {
        r.json().map_err(|e| Error::Service(format!("{method} {}: {e}", self.redacted(path))))
    }

    fn refused(&self, method: &str, path: &str, r: &Response) -> Error {
        Error::Service(format!("{method} {}: {}", self.redacted(path), r.error_text()))
    }

    fn redacted(&self, path: &str) -> String {
        http::redact_url(&format!("{}{path}", self.base))
    }
}

/// The filter is Glance's; keymigrate compares the owner itself too.
fn owned_by(image: &Image, owners: &[String]) -> bool {
    owners.is_empty() || image.owner.as_ref().is_some_and(|o| owners.contains(o))
}

/// The listings to make: visible and hidden images, of each owner in `owners` (as the query's
/// `&owner=…`), or of every project when it is empty.
fn passes(owners: &[String]) -> Vec<(bool, String)> {
    let owners: Vec<String> = if owners.is_empty() { vec![String::new()] } else { owners.iter().map(|o| format!("&owner={}", segment(o))).collect() };
    [false, true].iter().flat_map(|h| owners.iter().map(move |o| (*h, o.clone()))).collect()
}

/// Glance refused to change this image (property protections, a conflict): the image is
/// reported, the run goes on.
#[derive(Debug, Clone)]
pub struct PatchRefused(pub String);

/// Characters left as they are in a path segment or query value: Glance's image IDs and
/// Keystone's project IDs are UUIDs or hex.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_');

/// An image ID from Glance's own answer, as a path segment: it must not be able to change the path.
fn segment(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, SEGMENT).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(v: Value) -> Image {
        Image::from_json(v.as_object().expect("object")).expect("image")
    }

    #[test]
    fn glance_catalog_info_is_read_as_cinder_reads_it() {
        let ok = |v: &str| parse_catalog_info(v).expect(v);
        assert_eq!(ok("image:glance:publicURL"), ("image".into(), "public".into()));
        assert_eq!(ok("image:glance:internalURL"), ("image".into(), "internal".into()));
        assert_eq!(ok(" image : anything : adminURL "), ("image".into(), "admin".into()));
        // Cinder matches the type only: the name may be anything, even empty.
        assert_eq!(ok("image::internal"), ("image".into(), "internal".into()));
        for (bad, says) in [
            ("image:glance", "has 2 field(s)"),
            ("image:glance:publicURL:x", "has 4 field(s)"),
            ("", "has 1 field(s)"),
            (":glance:publicURL", "no service type"),
            ("image:glance:public_url", "'public_url' is not one of publicURL, internalURL, adminURL"),
            ("image:glance:PublicURL", "is not one of"),
        ] {
            let e = parse_catalog_info(bad).expect_err(bad);
            assert!(e.contains(says), "{bad:?}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn the_catalogs_glance_is_the_one_of_the_region_and_never_a_guess() {
        let ep = |region: Option<&str>, url: &str| Endpoint {
            interface: "public".into(),
            url: url.into(),
            region_id: region.map(String::from),
            region: None,
        };
        let lookup = |region: Option<&str>| CatalogLookup {
            service_type: "image".into(),
            interface: "public".into(),
            region: region.map(|r| (r.to_string(), "[barbican] barbican_region_name")),
        };
        let two = [ep(Some("R1"), "http://g1"), ep(Some("R1"), "http://g1b"), ep(Some("R2"), "https://g2")];
        assert_eq!(locate(&two, &lookup(Some("R2"))).expect("R2"), "https://g2");
        assert_eq!(locate(&two, &lookup(Some("R1"))).expect("R1"), "http://g1");
        let e = locate(&two, &lookup(None)).expect_err("ambiguous").to_string();
        assert!(e.contains("several regions (R1, R2)") && e.contains("[barbican] barbican_region_name"), "{e}");
        assert!(e.contains("glance_api_servers") && e.contains("--glance-endpoint"), "{e}");
        let e = locate(&two, &lookup(Some("R3"))).expect_err("no R3").to_string();
        assert!(e.contains("interface public in region R3 ([barbican] barbican_region_name), only in R1, R2"), "{e}");
        // One region (or endpoints in no region at all): that one.
        assert_eq!(locate(&two[..2], &lookup(None)).expect("R1 only"), "http://g1");
        assert_eq!(locate(&[ep(None, "http://g")], &lookup(None)).expect("no region"), "http://g");
        let e = locate(&[ep(None, "http://g"), ep(Some("R1"), "http://g1")], &lookup(None)).expect_err("two").to_string();
        assert!(e.contains("((no region), R1)"), "{e}");
        let e = locate(&[], &lookup(None)).expect_err("none").to_string();
        assert!(e.contains("has no 'image' endpoint for interface public;") && e.contains("glance_catalog_info"), "{e}");
        let e = locate(&[], &lookup(Some("R1"))).expect_err("none in R1").to_string();
        assert!(e.contains("in region R1 ([barbican] barbican_region_name);"), "{e}");
        for e in [locate(&two, &lookup(None)), locate(&[], &lookup(None))] {
            let e = e.expect_err("error");
            assert_eq!(e.exit_code(), crate::error::exit::INTERVENTION);
            assert!(!e.to_string().contains('\n'));
        }
    }

    #[test]
    fn only_a_private_owned_image_that_is_not_a_server_snapshot_is_migrated() {
        let base = serde_json::json!({"id": "i1", "owner": "p1", "visibility": "private", "status": "active",
            "cinder_encryption_key_id": ZERO_KEY_ID, "cinder_encryption_key_deletion_policy": "on_image_deletion"});
        let private = image(base.clone());
        assert!(private.is_zero());
        assert_eq!(private.deletion_policy.as_deref(), Some("on_image_deletion"));
        for shared in [SharedImages::Report, SharedImages::Acl] {
            assert_eq!(rule(&private, shared), ImageAction::NewSecret);
            // Public and community images are reported even with --shared-images acl: every
            // project may use them, and no ACL can name every user.
            for (visibility, reason) in [("shared", SHARED), ("public", PUBLIC), ("community", COMMUNITY), ("odd", UNKNOWN_VISIBILITY)] {
                let mut v = base.clone();
                v["visibility"] = visibility.into();
                assert_eq!(rule(&image(v), shared), ImageAction::Reported(reason), "{visibility}");
            }
            for owner in [Value::Null, "".into(), "  ".into()] {
                let mut v = base.clone();
                v["owner"] = owner;
                assert_eq!(rule(&image(v), shared), ImageAction::Reported(NO_OWNER));
            }
            for bdm in ["block_device_mapping", "bdm_v2"] {
                let mut v = base.clone();
                v[bdm] = "[]".into();
                v["visibility"] = "shared".into();
                let mut snapshot = image(v);
                snapshot.members = Some(vec!["p2".into()]);
                assert_eq!(rule(&snapshot, shared), ImageAction::Reported(SERVER_SNAPSHOT), "{bdm}");
            }
        }
        // Shared: reported while it has members (or before they are listed), migrated without;
        // with --shared-images acl, migrated for its members too once they are listed.
        let mut shared = base.clone();
        shared["visibility"] = "shared".into();
        let mut listed = image(shared);
        listed.members = Some(vec!["p2".into(), "p3".into()]);
        assert_eq!(rule(&listed, SharedImages::Report), ImageAction::Reported(SHARED));
        assert_eq!(rule(&listed, SharedImages::Acl), ImageAction::NewSecretForMembers);
        listed.members = Some(Vec::new());
        assert_eq!(rule(&listed, SharedImages::Report), ImageAction::NewSecret);
        assert_eq!(rule(&listed, SharedImages::Acl), ImageAction::NewSecret);
        listed.members = None;
        assert_eq!(rule(&listed, SharedImages::Acl), ImageAction::Reported(SHARED));
        let mut orphan = private.clone();
        orphan.owner_gone = true;
        assert_eq!(rule(&orphan, SharedImages::Acl), ImageAction::Reported(OWNER_GONE));
        listed.owner = None;
        assert_eq!(rule(&listed, SharedImages::Acl), ImageAction::Reported(SHARED));
    }

    #[test]
    fn glance_api_conf_says_whether_its_key_manager_is_barbican() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("glance-api.conf");
        for (text, expected) in [
            ("[DEFAULT]\nbind_port = 9292\n", GlanceKeyManager::Barbican),
            ("[key_manager]\nbackend = barbican\n", GlanceKeyManager::Barbican),
            ("[key_manager]\nbackend = castellan.key_manager.barbican_key_manager.BarbicanKeyManager\n", GlanceKeyManager::Barbican),
            ("[key_manager]\nbackend = vault\n", GlanceKeyManager::Other("vault".into())),
            ("[key_manager]\nbackend = castellan.key_manager.not_implemented_key_manager.NotImplementedKeyManager\nfixed_key = 00ff\n",
             GlanceKeyManager::Other("castellan.key_manager.not_implemented_key_manager.NotImplementedKeyManager".into())),
        ] {
            std::fs::write(&file, text).expect("write");
            assert_eq!(key_manager_of(&file), expected, "{text}");
        }
        assert!(matches!(key_manager_of(&dir.path().join("missing.conf")), GlanceKeyManager::Unknown(_)));
        std::fs::write(&file, "[key_manager\nbackend = vault\n").expect("write");
        assert!(matches!(key_manager_of(&file), GlanceKeyManager::Unknown(_)));
    }

    #[test]
    fn a_look_alike_value_is_not_the_all_zeros_id() {
        for key in ["00000000-0000-0000-0000-00000000000", "00000000-0000-0000-0000-000000000000 ", "0"] {
            let v = serde_json::json!({"id": "i1", "visibility": "private", "cinder_encryption_key_id": key});
            assert!(!image(v).is_zero(), "{key:?}");
        }
        let v = serde_json::json!({"id": "i1", "visibility": "private"});
        assert!(!image(v).is_zero());
        assert!(Image::from_json(serde_json::json!({"name": "no id"}).as_object().expect("object")).is_none());
    }
}
